//! `rssm forward` end to end: the real binary against an in-process simulator, forwarding to real
//! TCP servers on 127.0.0.1. Every wait is bounded; everything stays on loopback.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::forward::*;
use common::term::Term;
use common::{run_bounded, Sim, DEMO};
use rssm_sim::relay::RelayCommand;
use rssm_sim::state::SessionStatus;
use rssm_sim::{FaultConfig, SimConfig};
use rssm_testkit::net::{echo_server, free_port, serve_echo, Source};
use rssm_testkit::pattern;
use rssm_testkit::wait;
use sha2::{Digest, Sha256};

/// StartSession through the simulator's API (SigV4-signed, as the AWS CLI would); returns the
/// response JSON the CLI hands to the plugin.
fn start_session(sim: &Sim, request: &serde_json::Value) -> String {
    let addr = sim.sim.addr();
    let host = addr.to_string();
    let body = serde_json::to_vec(request).expect("json");
    let base = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "AmazonSSM.StartSession"),
    ];
    let url = format!("http://{host}/");
    let config = sim.sim.config();
    let signed = rssm_sim::sigv4::sign_headers(
        &config.credentials,
        &config.region,
        "ssm",
        rssm_sim::sigv4::ToSign {
            method: "POST",
            url: &url,
            headers: &base,
            body: &body,
        },
        std::time::SystemTime::now(),
    )
    .expect("sign");
    let mut req = String::from("POST / HTTP/1.1\r\n");
    for (k, v) in base {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    for (k, v) in signed {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut stream = connect(addr);
    stream.write_all(req.as_bytes()).expect("request");
    stream.write_all(&body).expect("body");
    let mut resp = String::new();
    stream.read_to_string(&mut resp).expect("response");
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "StartSession: {resp}");
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "expected a sized body: {head}"
    );
    body.to_owned()
}

fn session_document(sim: &Sim, session_id: &str) -> String {
    let sessions = sim.sim.state().sessions();
    let record = sessions.get(session_id).expect("session known to the sim");
    record.plan.document_name.clone()
}

#[test]
fn fifty_concurrent_connections_share_one_session() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    assert_eq!(f.remote, format!("localhost:{echo}"));
    assert_eq!(
        session_document(&sim, &f.session_id),
        "AWS-StartPortForwardingSession"
    );
    thread::scope(|scope| {
        let clients: Vec<_> = (0..50u64)
            .map(|i| {
                scope.spawn(move || {
                    let data = pattern(i, 20_000 + 997 * i as usize);
                    let got = round_trip(f.local, &data);
                    assert!(
                        got == data,
                        "connection {i}: {} of {} bytes",
                        got.len(),
                        data.len()
                    );
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client ok");
        }
    });
    assert_eq!(sim.sim.state().sessions().len(), 1, "one session for all");
    assert!(fwd.is_running());
}

/// MiB each way in the bulk test (`RSSM_FORWARD_BULK_MIB` overrides). With the dev profile's
/// opt-level for sha2/tungstenite/rssm-protocol, 256 MiB takes about 25 s on 2 cores.
fn bulk_mib() -> usize {
    std::env::var("RSSM_FORWARD_BULK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[test]
fn carries_256_mib_each_way_through_one_connection() {
    let mib = bulk_mib();
    let total = mib * 1024 * 1024;
    let sim = Sim::with_config(SimConfig {
        faults: FaultConfig {
            rate_limit: None,
            ..FaultConfig::default()
        },
        agent_read_pause: Duration::ZERO,
        ..SimConfig::default()
    });
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-q", "-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    let stream = connect(f.local);
    let mut writer = stream.try_clone().expect("clone");
    let start = Instant::now();
    let (sent, (received, received_len)) = thread::scope(|scope| {
        let sender = scope.spawn(move || {
            let mut hash = Sha256::new();
            let block = pattern(42, 1024 * 1024);
            for i in 0..mib {
                // Vary each MiB so a misplaced block changes the digest.
                let mut chunk = block.clone();
                chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
                hash.update(&chunk);
                writer.write_all(&chunk).expect("upload");
            }
            writer.shutdown(Shutdown::Write).expect("half-close");
            hash.finalize()
        });
        let received = read_digest(&stream, total);
        (sender.join().expect("sender"), received)
    });
    let elapsed = start.elapsed();
    let (user, system) = fwd.cpu_time();
    let peak = fwd.peak_rss();
    assert_eq!(received_len, total);
    assert_eq!(sent, received, "sha256 of what came back");
    let rate = (total as f64 / (1024.0 * 1024.0)) / elapsed.as_secs_f64();
    eprintln!(
        "bulk: {mib} MiB each way in {:.1} s = {rate:.1} MiB/s each way ({:.1} MiB/s total); \
         rssm CPU user {:.1} s + system {:.1} s ({:.0}% of one core), peak RSS {} MiB",
        elapsed.as_secs_f64(),
        2.0 * rate,
        user.as_secs_f64(),
        system.as_secs_f64(),
        100.0 * (user + system).as_secs_f64() / elapsed.as_secs_f64(),
        peak >> 20,
    );
    fwd.interrupt();
    assert!(fwd.wait_exit().success());
}

/// Under the service's message cap, with the agent's 1 ms pause per 1024-byte read: rssm's
/// default pacing (batches of messages, each a wake-up) moves data both ways at once without a
/// single message over the cap, which the real service would answer with `pause_publication`.
#[test]
fn a_capped_echo_both_ways_is_never_throttled() {
    const TOTAL: usize = 3 << 19; // 1.5 MiB: about 1.6 s at the cap
    let sim = Sim::with_config(SimConfig {
        faults: FaultConfig {
            rate_limit: Some(1000),
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    });
    assert!(
        !sim.sim.config().agent_read_pause.is_zero(),
        "the agent paces itself"
    );
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-q", "-L", &format!("0:localhost:{echo}")]);
    let stream = connect(fwd.forwarding(0).local);
    let mut writer = stream.try_clone().expect("clone");
    let data = pattern(7, TOTAL);
    let (sent, received) = thread::scope(|scope| {
        let sender = scope.spawn(|| {
            writer.write_all(&data).expect("upload");
            writer.shutdown(Shutdown::Write).expect("half-close");
        });
        let mut received = Vec::with_capacity(TOTAL);
        (&stream).read_to_end(&mut received).expect("echo");
        (sender.join(), received)
    });
    sent.expect("sender");
    assert_eq!(received.len(), TOTAL);
    assert!(received == data, "the echo differs from what was sent");
    assert_eq!(sim.sim.state().throttled(), 0, "messages over the cap");
    fwd.interrupt();
    assert!(fwd.wait_exit().success());
}

#[test]
fn a_slow_local_reader_keeps_memory_bounded() {
    const TOTAL: usize = 64 << 20;
    let sim = Sim::uncapped();
    // A server that sends TOTAL bytes as fast as it can, then closes.
    let source = Source::start(pattern(9, 1 << 20), TOTAL >> 20);
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{}", source.port)]);
    let f = fwd.forwarding(0);
    let before = fwd.peak_rss();
    let mut stream = connect(f.local);
    let mut buf = vec![0u8; 1 << 20];
    let mut got = stream.read(&mut buf).expect("first bytes");
    // Read nothing more: the session must push back instead of buffering 64 MiB. Measured once
    // every buffer on the way is full, which the server shows: it can write nothing more (for a
    // whole second: the pushed-back path moves nothing at all).
    let held = source.wait_blocked(Duration::from_secs(1), TOTAL, Duration::from_secs(60));
    let stalled = fwd.peak_rss();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("after {got} bytes: {e}"),
        }
    }
    assert_eq!(got, TOTAL);
    let growth = stalled.saturating_sub(before);
    eprintln!(
        "slow reader: rssm peak RSS {} MiB before, {} MiB while stalled ({} MiB held back at \
         the server)",
        before >> 20,
        stalled >> 20,
        (TOTAL - held) >> 20
    );
    assert!(
        growth < 24 << 20,
        "rssm grew by {} MiB while the reader stalled",
        growth >> 20
    );
}

#[test]
fn a_remote_host_forward_uses_the_remote_host_document() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:127.0.0.1:{echo}")]);
    let f = fwd.forwarding(0);
    assert_eq!(f.remote, format!("127.0.0.1:{echo}"));
    assert_eq!(
        session_document(&sim, &f.session_id),
        "AWS-StartPortForwardingSessionToRemoteHost"
    );
    let data = pattern(7, 100_000);
    assert!(round_trip(f.local, &data) == data);
}

#[test]
fn two_forwards_in_one_command_reach_their_own_servers() {
    let sim = Sim::start();
    let a = echo_server(b"server A\n");
    let b = echo_server(b"server B\n");
    let mut fwd = Forward::start(
        &sim,
        &[
            "-L",
            &format!("0:localhost:{a}"),
            "-L",
            &format!("127.0.0.1:0:127.0.0.1:{b}"),
        ],
    );
    let first = fwd.forwarding(0);
    let second = fwd.forwarding(1);
    let (to_a, to_b) = if first.remote.ends_with(&format!(":{a}")) {
        (first, second)
    } else {
        (second, first)
    };
    assert_ne!(to_a.session_id, to_b.session_id, "one session per -L");
    assert_eq!(round_trip(to_a.local, b"ping"), b"server A\nping");
    assert_eq!(round_trip(to_b.local, b"pong"), b"server B\npong");
}

#[test]
fn a_refused_remote_port_is_one_line_and_the_forward_keeps_serving() {
    let sim = Sim::start();
    let port = free_port();
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{port}")]);
    let f = fwd.forwarding(0);

    // Nobody listens yet: the connection is closed without data, and one line says why.
    let mut refused = connect(f.local);
    let _ = refused.write_all(b"hello?");
    let mut buf = [0u8; 16];
    match refused.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("refused connection should close, got {other:?}"),
    }
    let line = fwd.wait_line("about the refused connection", |l| l.contains("refused"));
    assert_eq!(
        line,
        format!("rssm: connection to localhost:{port} refused on the target")
    );

    // Now something listens there: the same forward serves the next connection.
    serve_echo(
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("rebind the port"),
        b"",
    );
    let data = pattern(3, 50_000);
    assert!(round_trip(f.local, &data) == data);
    // No second refusal line: nothing more may come (300 ms bound that absence; the line of
    // the first refusal came before its connection closed).
    fwd.out.collect_for(Duration::from_millis(300));
    let refusals = fwd
        .out
        .seen
        .iter()
        .filter(|l| l.contains("refused"))
        .count();
    assert_eq!(refusals, 1, "stderr: {:?}", fwd.out.seen);
    assert!(fwd.is_running(), "the forward keeps serving");
}

#[test]
fn listens_on_loopback_only_by_default() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    assert_eq!(f.local.ip(), Ipv4Addr::LOCALHOST, "bound to 127.0.0.1");
    assert_eq!(round_trip(f.local, b"x"), b"x");
    // The same port on one of this machine's other addresses must not answer.
    let others: Vec<Ipv4Addr> = std::process::Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
        .filter(|ip: &Ipv4Addr| !ip.is_loopback())
        .collect();
    for ip in others {
        let addr = SocketAddr::from((ip, f.local.port()));
        let r = TcpStream::connect_timeout(&addr, Duration::from_secs(3));
        assert!(r.is_err(), "{addr} must not reach the forward");
    }
}

#[test]
fn ipv6_bind_addresses_work() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("[::1]:0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    assert_eq!(f.local.ip().to_string(), "::1");
    assert_eq!(round_trip(f.local, b"over v6"), b"over v6");
}

#[test]
fn lport_zero_prints_the_chosen_port_even_when_quiet() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["--quiet", "-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    assert_ne!(f.local.port(), 0);
    assert_eq!(round_trip(f.local, b"port"), b"port");
}

#[test]
fn a_forward_resumes_with_fresh_credentials_after_they_rotate() {
    // Credentials from a credential_process, as SSO, STS and assume-role tools provide them.
    // After the session starts they rotate: the simulator accepts only the new key, as AWS does
    // once temporary credentials expire. A reconnect must sign ResumeSession and the websocket,
    // and the final TerminateSession, with the new ones.
    let sim = Sim::start();
    let dir = common::TempDir::new("rotating-credentials");
    let creds_path = dir.0.join("creds.json");
    let write_creds = |key: &str, secret: &str| {
        let json = format!(r#"{{"Version":1,"AccessKeyId":"{key}","SecretAccessKey":"{secret}"}}"#);
        std::fs::write(&creds_path, json).expect("credentials file");
    };
    let first = rssm_sim::SimCredentials::default();
    write_creds(&first.access_key_id, &first.secret_access_key);
    let config = dir.0.join("config");
    std::fs::write(
        &config,
        format!(
            "[profile rotating]\ncredential_process = cat {}\n",
            creds_path.display()
        ),
    )
    .expect("config file");
    let echo = echo_server(b"");
    let mut cmd = sim.rssm();
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_PROFILE", "rotating")
        .args(["forward", DEMO, "-L", &format!("0:localhost:{echo}")]);
    let mut fwd = Forward::spawn(cmd, Pipe::Stderr);
    let f = fwd.forwarding(0);
    assert_eq!(round_trip(f.local, b"before"), b"before");

    let rotated = rssm_sim::SimCredentials {
        access_key_id: "AKIAROTATEDEXAMPLE01".into(),
        secret_access_key: "rotated/secret/key/for/the/simulator0001".into(),
    };
    write_creds(&rotated.access_key_id, &rotated.secret_access_key);
    sim.sim.state().rotate_credentials(rotated);
    let relay = sim.sim.state().sessions()[&f.session_id].relay.clone();
    relay
        .blocking_send(RelayCommand::KillClient)
        .expect("relay alive");
    let resumed = fwd.wait_line("the resume", |l| {
        l.contains("resumed after") || l.contains("could not reconnect")
    });
    assert!(resumed.contains("resumed after"), "{:?}", fwd.out.seen);
    assert_eq!(round_trip(f.local, b"after"), b"after");
    assert!(
        fwd.out
            .seen
            .iter()
            .all(|l| !l.contains("starting a new one")),
        "the same session went on: {:?}",
        fwd.out.seen
    );
    fwd.ctrl_c_ends_cleanly();
    // TerminateSession was signed with the new key too.
    wait::until_true("the session terminated", WAIT, || {
        sim.sim.state().sessions()[&f.session_id].status == SessionStatus::Terminated
    });
}

#[test]
fn ctrl_c_exits_at_once_when_the_terminate_session_call_hangs() {
    // TerminateSession is received and never answered (an endpoint behind a dead proxy): the
    // session already ended on the data channel, so rssm gives the call half a second.
    let sim = Sim::with_config(SimConfig {
        faults: FaultConfig {
            hang_api: vec!["TerminateSession".into()],
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    });
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    assert_eq!(round_trip(f.local, b"up"), b"up");
    let asked = Instant::now();
    fwd.interrupt();
    let status = fwd.wait_exit();
    let took = asked.elapsed();
    assert!(
        status.success(),
        "exit {status:?}; stderr {:?}",
        fwd.out.seen
    );
    // 0.5 s for the call plus the data channel's goodbye; the SDK alone would wait for ever.
    assert!(took < Duration::from_secs(3), "Ctrl-C took {took:?}");
}

#[test]
fn ctrl_c_closes_everything_exits_zero_and_frees_the_port() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    // A connection still open at Ctrl-C is closed too.
    let mut open = connect(f.local);
    open.write_all(b"still here").expect("write");
    let mut buf = [0u8; 10];
    open.read_exact(&mut buf).expect("echo");
    fwd.interrupt();
    let status = fwd.wait_exit();
    assert!(
        status.success(),
        "exit {status:?}; stderr {:?}",
        fwd.out.seen
    );
    assert!(
        matches!(open.read(&mut buf), Ok(0) | Err(_)),
        "connection closed"
    );
    TcpListener::bind(f.local).expect("the port is free again");
    let status = wait::until("the session's end", WAIT, || {
        let status = sim.sim.state().sessions()[&f.session_id].status;
        (!status.is_active()).then_some(status)
    });
    assert_eq!(status, SessionStatus::Terminated);
}

#[test]
fn a_busy_local_port_fails_before_any_session_starts() {
    let sim = Sim::start();
    let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let mut fwd = Forward::start(&sim, &[&port.to_string()]);
    let status = fwd.wait_exit();
    assert_eq!(status.code(), Some(255));
    let line = fwd.wait_line("about the busy port", |l| l.contains("cannot listen"));
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(sim.sim.state().sessions().is_empty(), "no session started");
}

#[test]
fn a_session_terminated_by_the_service_is_replaced_on_the_same_port() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    // A connection open when the session goes ends cleanly: EOF, not a reset.
    let mut open = connect(f.local);
    open.write_all(b"before").expect("write");
    let mut buf = [0u8; 6];
    open.read_exact(&mut buf).expect("echo");
    let relay = sim.sim.state().sessions()[&f.session_id].relay.clone();
    relay
        .blocking_send(RelayCommand::Terminate {
            output: "Session ended by an administrator".into(),
        })
        .expect("relay alive");
    let ended = fwd.wait_line("about the ended session", |l| l.contains("ended ("));
    assert!(
        ended.contains(&f.session_id)
            && ended.contains("closed by the service: Session ended by an administrator")
            && ended.contains("starting a new one"),
        "{ended}"
    );
    assert!(
        matches!(open.read(&mut buf), Ok(0)),
        "EOF on the old connection"
    );
    let again = fwd.wait_line("forwarding again", |l| l.contains("forwarding again"));
    let new_id = again.rsplit(' ').next().expect("session id");
    assert_ne!(new_id, f.session_id, "{again}");
    assert!(sim.sim.state().sessions()[new_id].status.is_active());
    assert_eq!(round_trip(f.local, b"after"), b"after");
    fwd.ctrl_c_ends_cleanly();
}

#[test]
fn a_silent_gateway_is_noticed_and_the_forward_resumes_without_losing_bytes() {
    // 1 s into the data channel the gateway stops relaying and answering pings, but keeps the
    // TCP connection open.
    let sim = Sim::with_config(SimConfig {
        faults: FaultConfig {
            kill_after: Some(Duration::from_secs(1)),
            blackhole: true,
            ..Default::default()
        },
        ..Default::default()
    });
    let echo = echo_server(b"");
    let started = Instant::now();
    let mut fwd = Forward::start(
        &sim,
        &["--alive-timeout", "3", "-L", &format!("0:localhost:{echo}")],
    );
    let f = fwd.forwarding(0);
    // Sent into the silence: once the gateway says it has stopped relaying.
    sim.logs
        .wait_line(&["data channel blackholed", &f.session_id], WAIT);
    let data = pattern(11, 200_000);
    assert_eq!(round_trip(f.local, &data), data);
    let lost = fwd.wait_line("the dead path", |l| l.contains("reconnecting"));
    assert!(
        lost.contains("no response from the service for 3 s")
            || lost.contains("no acknowledgement from the target"),
        "{lost}"
    );
    fwd.wait_line("resumed", |l| l.contains("resumed after"));
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}; stderr {:?}",
        started.elapsed(),
        fwd.out.seen
    );
    assert!(
        !fwd.out
            .seen
            .iter()
            .any(|l| l.contains("starting a new one")),
        "the same session carried on: {:?}",
        fwd.out.seen
    );
    fwd.interrupt();
    assert!(fwd.wait_exit().success(), "stderr {:?}", fwd.out.seen);
}

#[test]
fn connections_wait_while_the_agent_restarts_and_are_served_by_the_next_session() {
    // The agent restarts 1.5 s into the first session and is away for 2.5 s: StartSession
    // answers TargetNotConnected meanwhile.
    let sim = Sim::with_config(SimConfig {
        faults: FaultConfig {
            agent_restart_after: Some(Duration::from_millis(1500)),
            agent_restart_for: Duration::from_millis(2500),
            ..Default::default()
        },
        ..Default::default()
    });
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    fwd.wait_line("about the ended session", |l| l.contains("ended ("));
    // No session now: the connection is accepted and waits instead of being refused.
    let data = pattern(7, 100_000);
    let waited = Instant::now();
    assert_eq!(round_trip(f.local, &data), data);
    let retry = fwd.wait_line("a retry", |l| l.contains("cannot start a new session"));
    assert!(retry.contains("TargetNotConnected"), "{retry}");
    let again = fwd.wait_line("forwarding again", |l| l.contains("forwarding again"));
    assert!(again.contains("(1 connection waited for it)"), "{again}");
    assert!(waited.elapsed() >= Duration::from_secs(1), "it had to wait");
    fwd.ctrl_c_ends_cleanly();
}

#[test]
fn ctrl_c_while_waiting_for_a_new_session_exits_zero_and_closes_waiting_connections() {
    let sim = Sim::with_config(SimConfig {
        faults: FaultConfig {
            agent_restart_after: Some(Duration::from_millis(500)),
            agent_restart_for: Duration::from_secs(60),
            ..Default::default()
        },
        ..Default::default()
    });
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    fwd.wait_line("a retry", |l| l.contains("cannot start a new session"));
    let mut waiting = connect(f.local);
    waiting
        .write_all(b"anyone?")
        .expect("accepted while waiting");
    fwd.interrupt();
    let status = fwd.wait_exit();
    assert!(
        status.success(),
        "exit {status:?}; stderr {:?}",
        fwd.out.seen
    );
    let mut buf = [0u8; 8];
    assert!(
        matches!(waiting.read(&mut buf), Ok(0) | Err(_)),
        "the waiting connection is closed"
    );
    TcpListener::bind(f.local).expect("the port is free again");
}

/// The service closes a session after 20 minutes without stream data in either direction, and
/// websocket pings do not count (PROTOCOL.md §5.5); rssm pings only to keep the websocket and
/// any NAT on the way alive, it does not fake traffic to defeat the idle timeout. So an idle
/// forward's session is closed every 20 minutes and replaced, and the local port stays usable.
/// Two hours are six idle timeouts: here the simulator's idle timeout is 2 s instead of 20 min
/// and the forward idles until it has reported six of them before a connection must work.
#[test]
fn an_idle_forward_outlives_the_service_idle_timeout() {
    const IDLE: Duration = Duration::from_secs(2);
    let sim = Sim::with_config(SimConfig {
        idle_timeout: IDLE,
        ..Default::default()
    });
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    fwd.out
        .wait_count("about idle timeouts", 6, IDLE * 30, |l| {
            l.contains("terminated due to inactivity")
        });
    let data = pattern(3, 50_000);
    assert_eq!(round_trip(f.local, &data), data);
    fwd.ctrl_c_ends_cleanly();
}

#[test]
fn a_terminal_gets_a_live_status_line_and_ctrl_c_works_there() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut cmd = sim.rssm();
    cmd.args(["forward", DEMO, "-L", &format!("0:localhost:{echo}")]);
    let mut term = Term::spawn(cmd);
    let line = term.expect(r"Forwarding 127\.0\.0\.1:\d+ ");
    let port: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .expect("port in the Forwarding line");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert_eq!(round_trip(addr, b"hello"), b"hello");
    // Redrawn in place: clear-line, then the counters.
    term.expect(r"\r\x1b\[2K0 open / 1 total \| up 5 B [^|]*\| down 5 B");
    term.send([3u8]);
    assert_eq!(term.wait_exit(WAIT), 0, "output {:?}", term.text());
}

#[test]
fn the_drop_in_plugin_forwards_and_speaks_like_the_official_one() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let request = serde_json::json!({
        "Target": DEMO,
        "DocumentName": "AWS-StartPortForwardingSession",
        "Parameters": {"portNumber": [echo.to_string()], "localPortNumber": ["0"]},
    });
    let response = start_session(&sim, &request);
    let id = serde_json::from_str::<serde_json::Value>(&response).expect("json")["SessionId"]
        .as_str()
        .expect("SessionId")
        .to_owned();
    let mut cmd = sim.rssm();
    cmd.args(["plugin", &response, "us-east-1", "StartSession", ""])
        .arg(request.to_string())
        .arg(sim.sim.endpoint());
    let mut plugin = Forward::spawn(cmd, Pipe::Stdout);
    plugin.wait_line("Starting session", |l| {
        l == format!("Starting session with SessionId: {id}")
    });
    let opened = plugin.wait_line("Port … opened", |l| l.starts_with("Port "));
    let port: u16 = opened
        .strip_prefix("Port ")
        .and_then(|l| l.strip_suffix(&format!(" opened for sessionId {id}.")))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected {opened:?}"));
    plugin.wait_line("Waiting for connections", |l| {
        l == "Waiting for connections..."
    });
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert_eq!(round_trip(addr, b"plugin"), b"plugin");
    assert_eq!(round_trip(addr, b"again"), b"again");
    plugin.wait_line("Connection accepted", |l| {
        l == format!("Connection accepted for session [{id}]")
    });
    plugin.interrupt();
    assert!(plugin.wait_exit().success());
    plugin.wait_line("Terminate signal", |l| {
        l == "Terminate signal received, exiting."
    });
    plugin.wait_line("Exiting session", |l| {
        l == format!("Exiting session with sessionId: {id}.")
    });
    let accepted = plugin
        .out
        .seen
        .iter()
        .filter(|l| l.starts_with("Connection accepted"))
        .count();
    assert_eq!(accepted, 1, "announced for the first connection only");
}

#[test]
fn sessions_share_one_port_and_each_serves_its_share_of_the_connections() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut fwd = Forward::start(
        &sim,
        &["--sessions", "4", "-L", &format!("0:localhost:{echo}")],
    );
    let lanes: Vec<Forwarding> = (0..4).map(|i| fwd.forwarding(i)).collect();
    let local = lanes[0].local;
    assert!(lanes.iter().all(|f| f.local == local), "{lanes:?}");
    let mut ids: Vec<&str> = lanes.iter().map(|f| f.session_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "four sessions: {lanes:?}");
    assert_eq!(
        fwd.out
            .seen
            .iter()
            .filter(|l| l.contains("session 1 of 4"))
            .count(),
        1,
        "{:?}",
        fwd.out.seen
    );

    // Eight connections, each served (echoed once) before the next arrives: two per session.
    let mut open: Vec<TcpStream> = (0..8)
        .map(|i| {
            let mut s = connect(local);
            s.write_all(&[i]).expect("write");
            let mut b = [0u8; 1];
            s.read_exact(&mut b).expect("echo");
            assert_eq!(b[0], i);
            s
        })
        .collect();
    let per_session: Vec<u64> = ids
        .iter()
        .map(|id| sim.sim.state().sessions()[*id].streams_opened)
        .collect();
    assert_eq!(per_session, [2, 2, 2, 2]);

    // All eight carry data at once, each its own bytes back.
    thread::scope(|scope| {
        for (i, s) in open.iter_mut().enumerate() {
            scope.spawn(move || {
                let data = pattern(i as u64, 300_000);
                let mut reader = s.try_clone().expect("clone");
                let got = thread::scope(|inner| {
                    inner.spawn(|| {
                        s.write_all(&data).expect("write");
                        s.shutdown(Shutdown::Write).expect("half-close");
                    });
                    let mut got = Vec::new();
                    reader.read_to_end(&mut got).expect("read");
                    got
                });
                assert!(got == data, "connection {i}: {} bytes back", got.len());
            });
        }
    });
    fwd.ctrl_c_ends_cleanly();
}

#[test]
fn several_sessions_that_cannot_start_say_why_once() {
    let sim = Sim::start();
    let mut cmd = sim.rssm();
    cmd.args([
        "forward",
        "i-0000000000000dead",
        "--sessions",
        "3",
        "-L",
        "0:localhost:80",
    ]);
    let out = run_bounded(cmd, WAIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("rssm: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
}

#[test]
fn a_striped_forward_replaces_a_lost_session_while_the_others_serve() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut fwd = Forward::start(
        &sim,
        &["--sessions", "2", "-L", &format!("0:localhost:{echo}")],
    );
    let a = fwd.forwarding(0);
    let b = fwd.forwarding(1);
    let relay = sim.sim.state().sessions()[&a.session_id].relay.clone();
    relay
        .blocking_send(RelayCommand::Terminate {
            output: String::new(),
        })
        .expect("relay alive");
    fwd.wait_line("about the ended session", |l| {
        l.contains(&a.session_id) && l.contains("starting a new one")
    });
    // Served meanwhile and afterwards, by whichever session is up.
    for i in 0..6u64 {
        let data = pattern(i, 30_000);
        assert!(round_trip(a.local, &data) == data, "connection {i}");
    }
    let again = fwd.wait_line("forwarding again", |l| l.contains("forwarding again"));
    let new_id = again.rsplit(' ').next().expect("session id").to_owned();
    assert!(sim.sim.state().sessions()[&new_id].status.is_active());
    assert!(sim.sim.state().sessions()[&b.session_id].status.is_active());
    fwd.ctrl_c_ends_cleanly();
}

/// Every token the simulator has issued so far (StartSession and ResumeSession).
fn tokens_issued(sim: &Sim) -> Vec<String> {
    sim.sim
        .state()
        .sessions()
        .values()
        .filter_map(|r| r.token.as_ref().map(|(t, _)| t.clone()))
        .collect()
}

/// No session token, no StreamUrl query, in a log.
fn assert_no_secrets(what: &str, log: &str, tokens: &[String]) {
    assert!(
        log.lines().count() > 20,
        "{what}: expected a trace log, got {log:?}"
    );
    for t in tokens {
        assert!(!log.contains(t.as_str()), "{what}: the token is in the log");
    }
    assert!(
        !log.contains("role=publish_subscribe"),
        "{what}: a StreamUrl query is in the log"
    );
}

#[test]
fn trace_logs_of_every_mode_hold_no_token_and_no_stream_url_query() {
    let sim = Sim::start();
    let trace = |mut cmd: std::process::Command| {
        cmd.env("RUST_LOG", "trace");
        cmd
    };
    // exec and shell (a shell session that ends by itself: piped-in EOF racing the remote
    // shell's start-up is not what this test is about).
    let shell = [
        "shell",
        DEMO,
        "--document",
        "AWS-StartInteractiveCommand",
        "--parameters",
        "command=echo hi",
    ];
    for args in [&["exec", DEMO, "--", "echo hi"][..], &shell[..]] {
        let mut cmd = trace(sim.rssm());
        cmd.args(args);
        let out = run_bounded(cmd, WAIT);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_no_secrets(args[0], &log, &tokens_issued(&sim));
    }
    // forward.
    let echo = echo_server(b"");
    let mut cmd = trace(sim.rssm());
    cmd.args(["forward", DEMO, "-L", &format!("0:localhost:{echo}")]);
    let mut fwd = Forward::spawn(cmd, Pipe::Stderr);
    let f = fwd.forwarding(0);
    assert_eq!(round_trip(f.local, b"traced"), b"traced");
    fwd.ctrl_c_ends_cleanly();
    assert_no_secrets("forward", &fwd.out.seen.join("\n"), &tokens_issued(&sim));
    // The drop-in plugin, with the response (and its token) in argv.
    let request = serde_json::json!({
        "Target": DEMO,
        "DocumentName": "AWS-StartNonInteractiveCommand",
        "Parameters": {"command": ["echo hi"], "separateOutputStream": ["true"]},
    });
    let response = start_session(&sim, &request);
    let mut cmd = trace(sim.rssm());
    cmd.args(["plugin", &response, "us-east-1", "StartSession", ""])
        .arg(request.to_string())
        .arg(sim.sim.endpoint());
    let out = run_bounded(cmd, WAIT);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_no_secrets("plugin", &log, &tokens_issued(&sim));
}

#[test]
fn a_connection_that_stops_reading_is_dropped_and_the_others_go_on() {
    // A server that streams 64 MiB to a connection that says `S` and echoes one that says `E`.
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = server.local_addr().unwrap().port();
    thread::spawn(move || {
        for conn in server.incoming().take(3) {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut kind = [0u8; 1];
                if conn.read_exact(&mut kind).is_err() {
                    return;
                }
                if kind[0] == b'S' {
                    let chunk = vec![b's'; 64 * 1024];
                    for _ in 0..1024 {
                        if conn.write_all(&chunk).is_err() {
                            return;
                        }
                    }
                } else {
                    let mut r = conn.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut conn);
                }
            });
        }
    });
    let sim = Sim::uncapped();
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{port}")]);
    let f = fwd.forwarding(0);
    // A asks for the stream and never reads it: the session's receive buffer fills.
    let mut stalled = connect(f.local);
    stalled.write_all(b"S").expect("ask for the stream");
    let stalled_port = stalled.local_addr().unwrap().port();
    // B, on the same session, waits behind it until A is dropped, then works.
    let mut other = connect(f.local);
    other.write_all(b"E").expect("ask for an echo");
    other.write_all(b"still alive").expect("write");
    other
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let mut buf = [0u8; 11];
    other.read_exact(&mut buf).expect("the echo arrives");
    assert_eq!(&buf, b"still alive");
    let line = fwd.out.wait_line(
        "about the dropped connection",
        Duration::from_secs(90),
        |l| l.contains("dropped the connection"),
    );
    assert!(
        line.contains(&format!("127.0.0.1:{stalled_port}")),
        "{line}"
    );
    // A was closed: draining it ends (EOF or reset), it does not hang.
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 20];
    loop {
        match stalled.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert_eq!(round_trip(f.local, b"Enew one"), b"new one");
    fwd.ctrl_c_ends_cleanly();
}

/// Peak RSS of a forward that carried one round trip, through an agent configured by `faults`,
/// once `hostile_frames` frames of misbehaviour were sent; checks the forward still works.
fn forward_peak_rss(faults: FaultConfig, hostile_frames: u64) -> u64 {
    let what = format!("{:?}", faults.hostile);
    let sim = Sim::with_config(SimConfig {
        agent_read_pause: Duration::ZERO,
        faults,
        ..SimConfig::default()
    });
    let echo = echo_server(b"");
    let mut fwd = Forward::start(&sim, &["-L", &format!("0:localhost:{echo}")]);
    let f = fwd.forwarding(0);
    wait::until_true(
        &format!("{what}: {hostile_frames} frames sent"),
        Duration::from_secs(120),
        || {
            assert!(
                fwd.is_running(),
                "{what}: rssm exited; stderr {:?}",
                fwd.out.seen
            );
            sim.sim.state().hostile_sent() >= hostile_frames
        },
    );
    assert_eq!(round_trip(f.local, b"after the flood"), b"after the flood");
    let rss = fwd.peak_rss();
    fwd.ctrl_c_ends_cleanly();
    let ours: Vec<&String> = fwd
        .out
        .seen
        .iter()
        .filter(|l| l.starts_with("rssm: "))
        .collect();
    assert!(ours.len() <= 3, "{what}: {ours:?}");
    rss
}

/// A forward through an agent that misbehaves in `mode` once: the forward goes on (the session
/// itself, or a new one after one clear line), and rssm's peak memory grows by less than the
/// reorder buffer's 12 MiB cap plus a margin over the same forward with a well-behaved agent
/// (the tests run a debug build, whose own pages are most of its RSS).
fn survives_a_hostile_agent(mode: rssm_sim::Hostile) {
    let baseline = forward_peak_rss(FaultConfig::default(), 0);
    let faults = FaultConfig {
        hostile: Some(mode),
        ..FaultConfig::default()
    };
    let rss = forward_peak_rss(faults, mode.frames());
    let grew = rss.saturating_sub(baseline);
    assert!(
        grew < 16 << 20,
        "{mode:?}: peak RSS {} MiB, {} MiB over a well-behaved agent's",
        rss >> 20,
        grew >> 20
    );
}

#[test]
fn far_future_sequence_numbers_are_refused_not_buffered() {
    survives_a_hostile_agent(rssm_sim::Hostile::FarFutureSequence);
}

#[test]
fn a_flood_within_the_reorder_window_is_held_to_its_byte_cap() {
    survives_a_hostile_agent(rssm_sim::Hostile::NearFutureFlood);
}

#[test]
fn an_oversized_websocket_message_costs_a_reconnect_not_memory() {
    survives_a_hostile_agent(rssm_sim::Hostile::OversizedFrame);
}

#[test]
fn a_flood_of_smux_syns_from_the_agent_is_ignored() {
    survives_a_hostile_agent(rssm_sim::Hostile::SmuxSynFlood);
}

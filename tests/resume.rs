//! Sessions survive a dropped websocket: ResumeSession for a fresh token, the same stream, and
//! retransmission filling the gap (PROTOCOL.md §5.6). The simulator kills the data channel
//! mid-transfer; nothing may be lost or duplicated.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use common::term::{Term, STEP};
use common::{run_bounded, Sim, DEMO};
use rssm_sim::{FaultConfig, SimConfig};
use rssm_testkit::net::{connect_when_listening, echo_server, free_port};
use rssm_testkit::{pattern, wait};
use sha2::{Digest, Sha256};

fn killing_sim(faults: FaultConfig) -> Sim {
    Sim::with_config(SimConfig {
        agent_read_pause: Duration::ZERO,
        faults,
        ..Default::default()
    })
}

#[test]
fn exec_output_survives_two_websocket_kills_exactly_once() {
    // A gateway that does not pause the agent while the client is away: with a pause, the
    // agent's pipe readers stop for good (see the next test), and no client can help that.
    // Without one, what the agent sends during a reconnect is dropped and comes back one
    // message per 100 ms resend tick, and only while the session lasts: the agent closes 2 s
    // after the command ends, repaired or not. So the output comes in bursts (15 KB every
    // 100 ms, 1.2 MB in all): a reconnect loses a burst at most, repaired long before the end.
    let sim = Sim::with_config(SimConfig {
        agent_read_pause: Duration::ZERO,
        pause_agent_while_client_away: false,
        faults: FaultConfig {
            kill_after_messages: Some(400),
            kill_times: 2,
            ..Default::default()
        },
        ..Default::default()
    });
    let mut cmd = sim.rssm();
    cmd.args([
        "exec",
        DEMO,
        "--",
        "i=0; while [ $i -lt 80 ]; do head -c 15000 /dev/zero | tr '\\0' z; sleep 0.1; i=$((i+1)); done",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout.len(), 1_200_000, "{err}");
    assert!(out.stdout.iter().all(|&b| b == b'z'));
    assert_eq!(err.matches("reconnecting").count(), 2, "{err}");
    assert_eq!(err.matches("resumed after").count(), 2, "{err}");
}

#[test]
fn exec_output_the_agent_stopped_reading_during_a_reconnect_is_reported_not_passed_off() {
    // The default gateway pauses the agent while the client is away; the agent's pipe reader
    // that finds the channel paused stops for good (`shell.go`), so the rest of stdout, the
    // trailer included, is never read. The command still ends (its output fits the pipe) and
    // the exit code arrives: rssm must say the output is incomplete rather than exit 0.
    // ResumeSession takes 300 ms, so the agent stays paused that long.
    let sim = killing_sim(FaultConfig {
        kill_after: Some(Duration::from_millis(1000)),
        kill_times: 1,
        delay_api: Some(("ResumeSession".into(), Duration::from_millis(300))),
        ..Default::default()
    });
    let mut cmd = sim.rssm();
    // A line every 10 ms for 3 s: output is flowing while the agent is paused.
    cmd.args([
        "exec",
        DEMO,
        "--",
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); sleep 0.01; done",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("resumed after").count(), 1, "{err}");
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains("stdout ended early"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("line-0\n"), "{stdout}");
    assert!(!stdout.contains("line-299"), "{stdout}");
}

#[test]
fn forward_survives_loss_duplication_reordering_latency_and_two_kills() {
    // The agent keeps its real pacing (one 1024-byte message per millisecond) and its real
    // repair: the head of its unacked list only, one message per 100 ms tick (§17.3). That
    // keeps up with 0.2% loss at 1000 messages a second (2 a second against 10), not with 1%.
    let sim = Sim::with_config(SimConfig {
        faults: FaultConfig {
            drop: 0.002,
            duplicate: 0.01,
            reorder: 0.01,
            latency: Duration::from_millis(20),
            // About 65 000 client frames (data and acks) cross in all: kills near 30% and 60%.
            kill_after_messages: Some(20_000),
            kill_times: 2,
            ..Default::default()
        },
        ..Default::default()
    });
    let echo_port = echo_server(b"");
    let local = free_port();
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
    let conn = connect_when_listening(
        SocketAddr::from((Ipv4Addr::LOCALHOST, local)),
        Duration::from_secs(30),
    );
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    const LEN: usize = 32 * 1024 * 1024;
    let started = std::time::Instant::now();
    let data = pattern(0x243f_6a88_85a3_08d3, LEN);
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
    let resumes: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("resumed after"))
        .collect();
    eprintln!(
        "32 MiB each way in {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        resumes.join("; ")
    );
    assert_eq!(got.len(), LEN, "{err}");
    assert_eq!(Sha256::digest(&got), want, "{err}");
    assert!(resumes.len() >= 2, "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
}

/// `rssm exec` with its stderr read line by line as it comes, each line with the time since the
/// start.
struct Timed {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(Duration, String)>,
}

impl Timed {
    fn spawn(mut cmd: std::process::Command) -> Timed {
        use std::io::BufRead;
        let started = std::time::Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rssm starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send((started.elapsed(), line));
            }
        });
        Timed { child, lines }
    }

    /// Waits (bounded) for the process to exit; returns its status, stdout and stderr lines.
    fn finish(
        mut self,
        limit: Duration,
    ) -> (std::process::ExitStatus, String, Vec<(Duration, String)>) {
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let lines: Vec<_> = self.lines.try_iter().collect();
                panic!("hung; stderr: {lines:?}");
            }
            std::thread::sleep(wait::POLL);
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).expect("stdout");
        }
        // Every stderr line, up to its end (the reader hangs up at end-of-file).
        let mut lines = Vec::new();
        loop {
            match self.lines.recv_timeout(limit) {
                Ok(line) => lines.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("stderr stayed open after the exit: {e}; {lines:?}"),
            }
        }
        (status, stdout, lines)
    }
}

fn blackholing_sim() -> Sim {
    // The gateway goes silent 1 s into the data channel, once: no frames, no pongs, the TCP
    // connection kept open.
    killing_sim(FaultConfig {
        kill_after: Some(Duration::from_secs(1)),
        blackhole: true,
        ..Default::default()
    })
}

#[test]
fn a_silent_gateway_is_noticed_within_the_alive_timeout_and_the_session_resumes() {
    let sim = blackholing_sim();
    let mut cmd = sim.rssm();
    cmd.args([
        "--alive-timeout",
        "3",
        "exec",
        DEMO,
        "--",
        "sleep 6; echo done",
    ]);
    let (status, stdout, lines) = Timed::spawn(cmd).finish(Duration::from_secs(60));
    let (noticed, line) = lines
        .iter()
        .find(|(_, l)| l.contains("reconnecting"))
        .unwrap_or_else(|| panic!("no reconnect; stderr {lines:?}"));
    assert!(
        line.contains("no response from the service for 3 s"),
        "{line}"
    );
    // Silent from 1 s after the data channel opened; noticed once nothing came for 3 s, checked
    // at every ping (each second for a 3 s timeout), plus the process's start-up.
    assert!(
        *noticed > Duration::from_secs(3) && *noticed <= Duration::from_secs(8),
        "noticed after {noticed:?}; stderr {lines:?}"
    );
    assert!(
        lines.iter().any(|(_, l)| l.contains("resumed after")),
        "{lines:?}"
    );
    assert_eq!(stdout, "done\n", "stderr {lines:?}");
    assert_eq!(status.code(), Some(0), "stderr {lines:?}");
}

#[test]
fn exec_ends_with_255_and_says_why_when_the_session_is_gone_for_good() {
    let sim = blackholing_sim();
    let mut cmd = sim.rssm();
    cmd.args([
        "--alive-timeout",
        "3",
        "exec",
        DEMO,
        "--",
        "sleep 30; echo never",
    ]);
    let run = Timed::spawn(cmd);
    // While the path is silent, the service ends the session: there is nothing to resume.
    let (id, relay) = wait::until("a connected session", Duration::from_secs(30), || {
        sim.sim.state().sessions().values().find_map(|s| {
            (s.status == rssm_sim::state::SessionStatus::Connected)
                .then(|| (s.id.clone(), s.relay.clone()))
        })
    });
    sim.logs
        .wait_line(&["data channel blackholed", &id], Duration::from_secs(30));
    relay
        .blocking_send(rssm_sim::relay::RelayCommand::Terminate {
            output: String::new(),
        })
        .expect("relay alive");
    let (status, stdout, lines) = run.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(255), "stderr {lines:?}");
    assert!(stdout.is_empty(), "{stdout}");
    let last = &lines.last().expect("a message").1;
    assert!(
        last.starts_with("rssm: ") && last.contains("cannot be resumed"),
        "stderr {lines:?}"
    );
}

#[test]
fn a_shell_command_typed_across_a_websocket_kill_runs_once_and_its_output_arrives_once() {
    // The gateway drops the client's websocket 3 s after the data channel opens, once.
    let sim = Sim::with_config(SimConfig {
        shell: Some("/bin/sh".into()),
        faults: FaultConfig {
            kill_after: Some(Duration::from_secs(3)),
            ..Default::default()
        },
        ..Default::default()
    });
    let mut cmd = sim.rssm();
    cmd.args(["shell", DEMO]);
    let mut t = Term::spawn(cmd);
    // Not anchored at the end: the notice of the kill may follow the prompt in the same read.
    t.expect(r"[#$] ");
    // A counter in the remote shell: a command that ran twice would print run-2.
    t.send("n=0; PS1='rssm''-ps> '\r");
    t.expect("rssm-ps> ");
    // On a loaded machine the kill may come before the prompt: `expect` consumed it then.
    if !t.text().contains("reconnecting") {
        t.expect("reconnecting");
    }
    // Typed while the websocket is down (or just after): sent once on the resumed session.
    t.send("n=$((n+1)); echo run-$n-$((6*7))\r");
    t.expect("run-1-42");
    t.expect("rssm-ps> ");
    assert!(t.text().contains("resumed after"), "{:?}", t.text());
    // Typed after the resume.
    t.send("n=$((n+1)); echo run-$n-$((6*7))\r");
    t.expect("rssm-ps> ");
    t.send("exit\r");
    assert_eq!(t.wait_exit(STEP), 0, "{}", t.text());
    let text = t.text();
    // The echoed command line says `$((6*7))`; only the shell's output says 42.
    assert_eq!(text.matches("run-1-42").count(), 1, "{text:?}");
    assert_eq!(text.matches("run-2-42").count(), 1, "{text:?}");
    assert!(!text.contains("run-3"), "{text:?}");
    assert_eq!(text.matches("resumed after").count(), 1, "{text:?}");
}

//! KMS-encrypted sessions end to end (PROTOCOL.md §7, §8): the real rssm binary against an
//! in-process simulator whose KMS answers GenerateDataKey and whose agent KMS-decrypts the data
//! key with the session's encryption context, verifies the challenge and encrypts every Output,
//! StdErr and ExitCode payload. "This session is encrypted using AWS KMS." is only sent once the
//! challenge verified, so seeing it proves the whole key exchange.
//!
//! Encryption is the session document's choice (`inputs.kmsKeyId`), never the client's:
//! the default shell document is encrypted by the account's preference
//! ([`SimConfig::shell_kms_key_id`]), and `rssm exec --document` picks the simulator's custom
//! encrypted NonInteractiveCommands document. Every wait is bounded; everything stays on loopback.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::term::Term;
use common::{Sim, DEMO};
use rssm_sim::documents::ENCRYPTED_COMMAND_DOCUMENT;
use rssm_sim::{FaultConfig, SimConfig};

/// Longest wait for any one thing to appear or end.
const STEP: Duration = Duration::from_secs(20);
/// What the agent says once the challenge verified (§7.5).
const ENCRYPTED: &str = "This session is encrypted using AWS KMS.";

/// A simulator whose account preference encrypts default shell sessions with `key`.
fn sim_with_shell_key(key: &str) -> Sim {
    Sim::with_config(SimConfig {
        shell: Some("/bin/sh".into()),
        shell_kms_key_id: Some(key.into()),
        ..SimConfig::default()
    })
}

/// Runs `cmd` with `stdin` written and then kept open until it exits (so the end of input cannot
/// end the session first), reading its output meanwhile, with a deadline so a hang fails the test.
fn run_bounded(mut cmd: Command, stdin: &[u8]) -> (Output, Duration) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("rssm starts");
    let mut input = child.stdin.take().expect("stdin pipe");
    input.write_all(stdin).expect("write stdin");
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout pipe")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr pipe")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if start.elapsed() > STEP {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    drop(input);
    let out = Output {
        status: status.unwrap_or_else(|| std::os::unix::process::ExitStatusExt::from_raw(-1)),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    if status.is_none() {
        panic!(
            "rssm hung for {STEP:?}; stdout: {:?} stderr: {:?}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    (out, elapsed)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `rssm exec` of `line` through the simulator's KMS-encrypted command document.
fn encrypted_exec(sim: &Sim, line: &str) -> Command {
    let mut cmd = sim.rssm();
    cmd.args([
        "exec",
        "--document",
        ENCRYPTED_COMMAND_DOCUMENT,
        DEMO,
        "--",
        line,
    ]);
    cmd
}

/// rssm failed the way a user should see: status 255 and exactly one `rssm:` line that says
/// what happened.
fn assert_one_clear_line(out: &Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "stderr: {err}");
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("rssm: ")).collect();
    assert_eq!(ours.len(), 1, "one rssm line: {err:?}");
    for n in needles {
        assert!(ours[0].contains(n), "{n:?} missing from {err:?}");
    }
}

#[test]
fn kms_shell_on_a_terminal_says_encrypted_runs_commands_and_exits() {
    let sim = sim_with_shell_key("alias/rssm-kms-test");
    let mut cmd = sim.rssm();
    cmd.args(["shell", DEMO]);
    let mut t = Term::spawn(cmd);
    t.expect(ENCRYPTED);
    t.expect(r"[#$] $");
    // The echoed command line says `$((6*7))`; only the remote shell's output says 42, and it
    // only arrives if the agent's encryption and our decryption agree.
    t.send("echo hello-$((6*7))\r");
    t.expect("hello-42");
    t.send("exit\r");
    assert_eq!(t.wait_exit(STEP), 0, "{}", t.text());
    assert!(t.text().contains("session closed"), "{}", t.text());
}

#[test]
fn kms_shell_notice_goes_to_stderr_and_output_to_stdout() {
    let sim = sim_with_shell_key("alias/rssm-kms-test");
    let mut cmd = sim.rssm();
    cmd.args(["shell", DEMO]);
    let (out, _) = run_bounded(cmd, b"echo piped-$((2*3))\nexit\n");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains("piped-6"), "stdout: {stdout:?}");
    assert!(!stdout.contains(ENCRYPTED), "stdout: {stdout:?}");
    assert!(stderr.contains(ENCRYPTED), "stderr: {stderr:?}");
}

#[test]
fn kms_exec_keeps_stdout_stderr_and_exit_code_apart() {
    let sim = sim_with_shell_key("alias/rssm-kms-test");
    let (out, _) = run_bounded(
        encrypted_exec(&sim, "echo out-$((1+1)); echo err-$((2+2)) >&2; exit 7"),
        b"",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(7), "stderr: {stderr}");
    assert_eq!(stdout, "out-2\n");
    assert!(stderr.contains("err-4"), "stderr: {stderr:?}");
    assert!(stderr.contains(ENCRYPTED), "stderr: {stderr:?}");
}

#[test]
fn kms_exec_carries_many_encrypted_messages_intact() {
    // ~170 KB of stdout: a few hundred messages, each with its own nonce and tag.
    let sim = sim_with_shell_key("alias/rssm-kms-test");
    let (out, _) = run_bounded(encrypted_exec(&sim, "seq 1 30000"), b"");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let expected: String = (1..=30000).map(|i| format!("{i}\n")).collect();
    assert!(out.stdout == expected.as_bytes(), "stdout differs");
}

#[test]
fn kms_key_the_account_lacks_is_one_clear_line_and_255() {
    // The agent asks for a key KMS does not know: GenerateDataKey fails, rssm says why at once
    // (not after the agent's 15 s handshake timeout) and the session ends.
    let sim = sim_with_shell_key("no-such-key");
    let mut cmd = sim.rssm();
    cmd.args(["shell", DEMO]);
    let (out, elapsed) = run_bounded(cmd, b"");
    assert_one_clear_line(
        &out,
        &[
            "KMS GenerateDataKey for key no-such-key failed",
            "NotFoundException",
            "Invalid keyId 'no-such-key'",
            "requires KMS encryption",
        ],
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", text(&out.stdout));
}

#[test]
fn unreachable_kms_endpoint_is_one_clear_line_and_255() {
    // AWS_ENDPOINT_URL_KMS is honoured like any SDK client's: here it names a closed port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let sim = sim_with_shell_key("alias/rssm-kms-test");
    let mut cmd = sim.rssm();
    cmd.env("AWS_ENDPOINT_URL_KMS", format!("http://127.0.0.1:{closed}"));
    cmd.args(["shell", DEMO]);
    let (out, _) = run_bounded(cmd, b"");
    assert_one_clear_line(
        &out,
        &[
            "KMS GenerateDataKey for key alias/rssm-kms-test failed",
            "cannot reach the KMS endpoint",
        ],
    );
}

#[test]
fn tampered_ciphertext_is_rejected_and_never_printed() {
    // The gateway flips one ciphertext byte of the first encrypted Output and fixes the digest,
    // as a man in the middle without the key could: the GCM tag must catch it.
    let sim = Sim::with_config(SimConfig {
        faults: FaultConfig {
            tamper_output: true,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    });
    let (out, _) = run_bounded(encrypted_exec(&sim, "echo secret-$((3*3))"), b"");
    assert!(out.stdout.is_empty(), "stdout: {:?}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(ENCRYPTED),
        "{}",
        text(&out.stderr)
    );
    assert_one_clear_line(&out, &["failed to decrypt", "tampered"]);
}

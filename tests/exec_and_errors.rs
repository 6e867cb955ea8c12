//! `rssm exec` end to end against the simulator, and what users see on bad input: one clear line
//! on stderr, a non-zero exit, no hang.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{rssm, run_bounded, Sim, DEMO};
use rssm_sim::state::SessionStatus;
use rssm_testkit::wait;

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

/// Reproducible "random" file contents.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut out = rssm_testkit::pattern(seed, len);
    // The agent's processStdoutData turns a valid U+FFFD (EF BF BD) inside a chunk into the
    // lone byte EF (sim/src/agent/utf8.rs): no client can undo that, so keep it out here.
    for i in 0..out.len().saturating_sub(2) {
        if out[i..i + 3] == [0xEF, 0xBF, 0xBD] {
            out[i + 2] = 0xBC;
        }
    }
    out
}

#[test]
fn exec_delivers_binary_files_byte_exact_whatever_their_last_bytes() {
    use sha2::{Digest, Sha256};
    let sim = Sim::uncapped();
    let dir = common::TempDir::new("exec-binary");
    // Ends the agent would hold back and drop: a lead byte 0xC2–0xF4 with 0–2 continuation
    // bytes; and sizes around its 1024-byte reads.
    let tails: [&[u8]; 8] = [
        b"",
        &[0xC2],
        &[0xE2, 0x82],
        &[0xF0, 0x9F, 0x98],
        &[0xF4],
        &[0xE0, 0xA0],
        &[0xC3, b'A'],
        &[0xFF, 0xFE],
    ];
    let sizes = [0usize, 1, 3, 1021, 1024, 1025, 4099, 65_536, 300_001];
    let mut n = 0;
    for (i, &size) in sizes.iter().enumerate() {
        for (j, tail) in tails.iter().enumerate().filter(|(j, _)| (i + j) % 3 == 0) {
            let mut data = pseudo_random((i * 31 + j) as u64, size);
            data.extend_from_slice(tail);
            let path = dir.0.join(format!("f{i}-{j}.bin"));
            std::fs::write(&path, &data).unwrap();
            let mut cmd = sim.rssm();
            cmd.args(["exec", DEMO, "--", "cat", path.to_str().unwrap()]);
            let out = run_bounded(cmd, Duration::from_secs(60));
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            assert_eq!(
                Sha256::digest(&out.stdout),
                Sha256::digest(&data),
                "{size} bytes + {tail:02x?}: got {} bytes",
                out.stdout.len()
            );
            n += 1;
        }
    }
    assert!(n >= 20, "{n} files");
    // stderr is byte-exact too.
    let data = pseudo_random(99, 5000);
    let path = dir.0.join("err.bin");
    std::fs::write(&path, [&data[..], &[0xE2, 0x82]].concat()).unwrap();
    let mut cmd = sim.rssm();
    cmd.args(["exec", DEMO, "--", "cat", path.to_str().unwrap(), ">&2"]);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stderr, [&data[..], &[0xE2, 0x82]].concat());
}

#[test]
fn the_documents_default_merges_output_and_rssm_says_the_status_is_unknown() {
    let sim = Sim::start();
    let mut cmd = sim.rssm();
    cmd.args([
        "exec",
        "--parameters",
        "separateOutputStream=false",
        DEMO,
        "--",
        "echo o; echo e >&2; exit 3",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    // Both lines on stdout (the agent wrote them to one file), then one line saying why 255.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "o\ne\n");
    assert_one_line_error(&out, "no exit status");
    assert!(
        stderr(&out).contains("separateOutputStream"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_custom_document_without_separate_output_is_run_without_it_and_warned_about() {
    let sim = Sim::start();
    let mut cmd = sim.rssm();
    cmd.args([
        "exec",
        "--document",
        rssm_sim::documents::COMMAND_ONLY_DOCUMENT,
        DEMO,
        "--",
        "echo o; exit 0",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "o\n");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(255), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("does not declare separateOutputStream"),
        "{err}"
    );
    assert!(lines[1].contains("no exit status"), "{err}");
}

/// Runs `rssm exec` with a command that prints `started` and then sleeps for 30 s, sends rssm
/// `signal` once that line is out, and returns rssm's exit status and the rest of its stdout,
/// within a deadline well short of the remote sleep.
fn exec_signalled(sim: &Sim, signal: i32) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader};
    let mut cmd = sim.rssm();
    cmd.args([
        "exec",
        DEMO,
        "--",
        "echo started; sleep 30; echo not-interrupted",
    ])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("rssm starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    assert_eq!(line, "started\n");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
        let _ = tx.send((child.wait(), rest));
    });
    let (status, rest) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("rssm ends well before the remote sleep would");
    (status.expect("wait"), rest)
}

#[test]
fn ctrl_c_stops_the_remote_command_and_its_status_comes_back() {
    let sim = Sim::start();
    let (status, rest) = exec_signalled(&sim, libc::SIGINT);
    // The agent signals the wrapper, which stops the command with SIGTERM: 128 + 15.
    assert_eq!(status.code(), Some(143));
    assert!(!rest.contains("not-interrupted"), "{rest}");
}

#[test]
fn sigterm_ends_the_session_on_the_service_and_exits_143() {
    let sim = Sim::start();
    let (status, rest) = exec_signalled(&sim, libc::SIGTERM);
    // Handled, not the default action (which would leave the session open): exit status 143.
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(!rest.contains("not-interrupted"), "{rest}");
    assert_eq!(sim.sim.state().sessions().len(), 1);
    wait::until_true(
        "the session ended on the service",
        Duration::from_secs(30),
        || {
            let sessions = sim.sim.state().sessions();
            sessions
                .values()
                .all(|s| s.status == SessionStatus::Terminated)
        },
    );
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

#[test]
fn a_running_demo_refuses_the_well_known_example_keys() {
    use std::io::{BufRead, BufReader};
    let mut demo = rssm()
        .args(["demo", "--", "echo ready; sleep 60"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rssm demo starts");
    let mut err = BufReader::new(demo.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("the demo's first line");
    let endpoint = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no endpoint in {line:?}"))
        .to_owned();
    let mut out = BufReader::new(demo.stdout.take().expect("stdout"));
    line.clear();
    out.read_line(&mut line).expect("the demo's command runs");
    assert_eq!(line, "ready\n");
    // Another local user, with the keys from AWS's documentation, against the demo's endpoint.
    let example = rssm_sim::SimCredentials::default();
    let mut cmd = rssm();
    cmd.env("AWS_ACCESS_KEY_ID", &example.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &example.secret_access_key)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_SSM", &endpoint)
        .args(["exec", DEMO, "--", "id"]);
    let refused = run_bounded(cmd, Duration::from_secs(30));
    let _ = demo.kill();
    let _ = demo.wait();
    assert_one_line_error(&refused, "UnrecognizedClientException");
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
    let offline = sim.offline_target();
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

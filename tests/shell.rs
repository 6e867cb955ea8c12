//! `rssm shell` end to end: the real binary on a real PTY (expectrl) against an in-process
//! simulator whose agent runs `/bin/sh` on a PTY of its own. Keys typed here travel
//! PTY → rssm (raw mode) → data channel → simulated agent → remote PTY, and back.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::term::{Term, STEP};
use common::{Sim, DEMO};
use rssm_sim::SimConfig;
use rssm_testkit::wait;

/// A simulator whose agent runs a plain POSIX shell, whatever `$SHELL` the tests run under.
fn sim() -> Sim {
    Sim::with_config(SimConfig {
        shell: Some("/bin/sh".into()),
        ..SimConfig::default()
    })
}

/// `rssm shell DEMO` on a fresh 80×24 PTY, returned once the remote prompt has appeared and
/// been replaced by a recognisable one.
fn shell(sim: &Sim) -> Term {
    let mut cmd = sim.rssm();
    cmd.args(["shell", DEMO]);
    let mut t = Term::spawn(cmd);
    t.expect(r"[#$] $");
    set_prompt(&mut t);
    t
}

/// `PS1=rssm-ps> `; written so that the echoed command line does not look like the prompt.
fn set_prompt(t: &mut Term) {
    t.send("PS1='rssm''-ps> '\r");
    prompt(t);
}

fn prompt(t: &mut Term) {
    t.expect("rssm-ps> $");
}

/// `sh -c SCRIPT` on a PTY with the simulator's environment and `$RSSM` naming the binary.
/// The script starts from `stty sane` (expectrl starts its PTYs with echo off).
fn wrapped(sim: &Sim, script: &str) -> Term {
    let mut cmd = Command::new("/bin/sh");
    sim.apply_env(&mut cmd);
    cmd.env("RSSM", common::rssm_path());
    cmd.args(["-c", &format!("stty sane; {script}")]);
    Term::spawn(cmd)
}

/// Runs `cmd` without a terminal, feeding `stdin`, with a deadline so a hang fails the test.
fn run_piped(mut cmd: Command, stdin: &[u8], limit: Duration) -> Output {
    use std::io::Write;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("rssm starts");
    let mut input = child.stdin.take().expect("stdin pipe");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "rssm hung for {limit:?}; stdout: {:?} stderr: {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn prompt_appears_commands_run_and_exit_says_session_closed() {
    let sim = sim();
    let mut t = shell(&sim);
    // The echoed command line says `$((6*7))`; only the remote shell's output says 42.
    t.send("echo hello-$((6*7))\r");
    t.expect("hello-42");
    prompt(&mut t);
    // The real agent never reports a shell's exit status for Standard_Stream (see
    // src/commands/shell.rs), so a clean close is 0 whatever the shell's status was.
    t.send("exit 3\r");
    assert_eq!(t.wait_exit(STEP), 0, "{}", t.text());
    assert!(t.text().contains("session closed"), "{}", t.text());
    assert!(!t.text().contains("panicked"), "{}", t.text());
}

#[test]
fn a_session_the_service_ends_says_why_and_restores_the_terminal() {
    let sim = Sim::with_config(SimConfig {
        shell: Some("/bin/sh".into()),
        max_session_duration: Some(Duration::from_secs(3)),
        ..SimConfig::default()
    });
    let mut t = wrapped(
        &sim,
        r#"echo "before=$(stty -g)"; "$RSSM" shell i-0123456789abcdef0; echo "rc=$?"; echo "after=$(stty -g)""#,
    );
    let before = t.expect(r"before=[0-9a-f:]+");
    t.expect(r"[#$] $");
    // The prompt has no newline: the notice still starts on a line of its own.
    t.expect(r"^\r\nsession closed: Session has reached the maximum session duration\.");
    t.expect("rc=0");
    let after = t.expect(r"after=[0-9a-f:]+");
    assert_eq!(before.rsplit('=').next(), after.rsplit('=').next());
    assert_eq!(t.wait_exit(STEP), 0);
}

#[test]
fn initial_size_and_every_resize_reach_the_remote_pty() {
    let sim = sim();
    let mut t = shell(&sim);
    t.send("stty size\r");
    t.expect("\n24 80\r?\n");
    prompt(&mut t);
    t.resize(132, 43);
    // SIGWINCH → Size message → the agent resizes its PTY. The keystrokes that ask for the size
    // travel on a path of their own: ask until the remote PTY has the new one.
    let deadline = Instant::now() + STEP;
    loop {
        t.send("stty size\r");
        let size = t.expect("\n(24 80|43 132)\r?\n");
        prompt(&mut t);
        if size.contains("43 132") {
            break;
        }
        assert!(Instant::now() < deadline, "still 24 80: {}", t.text());
        std::thread::sleep(wait::POLL);
    }
    t.send("exit\r");
    assert_eq!(t.wait_exit(STEP), 0);
}

/// Starts a 30 s sleep as the remote shell's foreground job, returning once it runs: the job
/// prints a marker after the shell made it the terminal's foreground process group (dash's child
/// does that before running anything), then becomes the sleep (`exec`, same process group). A
/// Ctrl-C or Ctrl-Z typed from then on reaches the sleep, not the shell.
fn sleep_in_the_foreground(t: &mut Term) {
    // The echoed command line says `$((6*7))`; only the job's output says 42.
    t.send("sh -c 'echo sleeping-$((6*7)); exec sleep 30'\r");
    t.expect("sleeping-42");
}

#[test]
fn ctrl_c_interrupts_the_remote_command_not_rssm() {
    let sim = sim();
    let mut t = shell(&sim);
    sleep_in_the_foreground(&mut t);
    let start = Instant::now();
    t.send("\x03");
    prompt(&mut t);
    t.send("echo after-$((1+1))\r");
    t.expect("after-2");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the remote sleep was not interrupted: {:?}",
        start.elapsed()
    );
    prompt(&mut t);
    t.send("exit\r");
    assert_eq!(t.wait_exit(STEP), 0);
}

#[test]
fn ctrl_z_stops_the_remote_job_and_keys_arrive_byte_for_byte() {
    let sim = sim();
    let mut t = shell(&sim);
    // Arrow keys, Ctrl-A and Ctrl-J (LF, which must not become CR) reach the remote program
    // unchanged; `od` shows them. Ctrl-D ends `od`'s input.
    t.send("od -An -tx1\r");
    t.expect("od -An -tx1\r\n");
    t.send("\x1b[A\x1b[D\x01\n\x04");
    t.expect("1b 5b 41 1b 5b 44 01 0a");
    prompt(&mut t);
    // Ctrl-Z stops the remote job (rssm itself is not suspended: the shell answers).
    sleep_in_the_foreground(&mut t);
    t.send("\x1a");
    t.expect("(?i)stopped");
    prompt(&mut t);
    t.send("kill -9 %1; echo killed-$((3*3))\r");
    t.expect("killed-9");
    prompt(&mut t);
    // dash refuses `exit` ("You have stopped jobs.") until it has reaped the killed job: ask
    // `jobs` until no job is stopped.
    let deadline = Instant::now() + STEP;
    loop {
        t.send("jobs; echo jobs-$((2+2))\r");
        let jobs = t.expect("jobs-4");
        prompt(&mut t);
        if !jobs.to_lowercase().contains("stopped") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job stays stopped: {}",
            t.text()
        );
        std::thread::sleep(wait::POLL);
    }
    t.send("exit\r");
    assert_eq!(t.wait_exit(STEP), 0, "{}", t.text());
}

#[test]
fn a_large_paste_arrives_whole() {
    let sim = sim();
    let mut t = shell(&sim);
    t.send("wc -c\r");
    t.expect("wc -c\r\n");
    // 3000 bytes in one write: rssm sends it as several ≤ 1024-byte messages.
    let line = format!("{}\r", "x".repeat(99));
    t.send(line.repeat(30));
    t.send("\x04");
    t.expect(r"\b3000\b");
    prompt(&mut t);
    t.send("exit\r");
    assert_eq!(t.wait_exit(STEP), 0);
}

#[test]
fn terminal_is_raw_during_the_session_and_restored_after() {
    let sim = sim();
    let mut t = wrapped(
        &sim,
        r#"echo "before=$(stty -g)"; "$RSSM" shell i-0123456789abcdef0; echo "rc=$?"; echo "after=$(stty -g)"; stty -a"#,
    );
    let before = t.expect(r"before=[0-9a-f:]+");
    t.expect(r"[#$] $");
    let raw = t.lflags();
    assert_eq!(raw & (libc::ICANON | libc::ECHO | libc::ISIG), 0, "not raw");
    t.send("exit\r");
    t.expect("rc=0");
    let after = t.expect(r"after=[0-9a-f:]+");
    assert_eq!(
        before.rsplit('=').next(),
        after.rsplit('=').next(),
        "{}",
        t.text()
    );
    assert_eq!(t.wait_exit(STEP), 0);
    let text = t.text();
    let stty_a = text.rsplit("after=").next().unwrap_or_default();
    let stty: Vec<&str> = stty_a
        .split_whitespace()
        .map(|w| w.trim_end_matches(';'))
        .collect();
    for flag in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(stty.contains(&flag), "{flag} not restored: {stty:?}");
    }
}

#[test]
fn sigterm_restores_the_terminal_and_ends_the_session() {
    let sim = sim();
    let mut t = wrapped(
        &sim,
        r#"echo "before=$(stty -g)"; "$RSSM" shell i-0123456789abcdef0; echo "rc=$?"; echo "after=$(stty -g)""#,
    );
    let before = t.expect(r"before=[0-9a-f:]+");
    t.expect(r"[#$] $");
    let rssm = child_of(t.pid());
    // SAFETY: kill(2) with a pid we just read and a valid signal number.
    assert_eq!(unsafe { libc::kill(rssm, libc::SIGTERM) }, 0);
    t.expect("rc=143");
    let after = t.expect(r"after=[0-9a-f:]+");
    assert_eq!(before.rsplit('=').next(), after.rsplit('=').next());
    assert_eq!(t.wait_exit(STEP), 0);
    assert!(t.text().contains("SIGTERM"), "{}", t.text());
}

/// The one child of `pid` (Linux: /proc/PID/task/PID/children).
fn child_of(pid: i32) -> i32 {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(child) = text.split_whitespace().next() {
            return child.parse().expect("a pid");
        }
        assert!(start.elapsed() < STEP, "{pid} has no child");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn piped_stdin_runs_the_script_and_exit_ends_the_session() {
    let sim = sim();
    let mut cmd = sim.rssm();
    cmd.args(["shell", DEMO]);
    let out = run_piped(
        cmd,
        b"echo piped-$((2*3))\nexit 3\n",
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("piped-6"), "stdout: {stdout:?}");
    assert!(stderr(&out).contains("session closed"), "{}", stderr(&out));
    // As in a terminal: Standard_Stream carries no exit status (see src/commands/shell.rs).
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn piped_stdin_without_exit_ends_when_the_input_does() {
    let sim = sim();
    let mut cmd = sim.rssm();
    cmd.args(["shell", DEMO]);
    let out = run_piped(cmd, b"echo eof-$((5*5))\n", Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("eof-25"), "stdout: {stdout:?}");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn remote_exit_status_is_ours_when_the_agent_reports_it() {
    // NonInteractiveCommands is the session type whose agent sends an ExitCode payload, when
    // the document's separateOutputStream is true.
    let sim = sim();
    let mut cmd = sim.rssm();
    cmd.args([
        "shell",
        DEMO,
        "--document",
        "AWS-StartNonInteractiveCommand",
        "--parameters",
        r#"command=sh -c "echo status-run; exit 3""#,
        "--parameters",
        "separateOutputStream=true",
    ]);
    let out = run_piped(cmd, b"", Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&out.stdout).contains("status-run"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

fn assert_one_line_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(255), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("rssm: ") && err.contains(needle), "{err:?}");
}

#[test]
fn unknown_target_is_one_clear_line_and_255() {
    let sim = sim();
    let mut cmd = sim.rssm();
    cmd.args(["shell", "i-00000000000000bad"]);
    let out = run_piped(cmd, b"", Duration::from_secs(30));
    assert_one_line_error(&out, "i-00000000000000bad");
}

#[test]
fn offline_target_is_one_clear_line_and_255() {
    let sim = sim();
    let offline = sim.offline_target();
    let mut cmd = sim.rssm();
    cmd.args(["shell", &offline]);
    let out = run_piped(cmd, b"", Duration::from_secs(30));
    assert_one_line_error(&out, "TargetNotConnected");
}

#[test]
fn errors_before_the_session_leave_the_terminal_alone() {
    // On a PTY: the failure comes before raw mode, and the terminal is as it was.
    let sim = sim();
    let mut t = wrapped(
        &sim,
        r#"echo "before=$(stty -g)"; "$RSSM" shell i-00000000000000bad; echo "rc=$?"; echo "after=$(stty -g)""#,
    );
    let before = t.expect(r"before=[0-9a-f:]+");
    t.expect("rc=255");
    let after = t.expect(r"after=[0-9a-f:]+");
    assert_eq!(before.rsplit('=').next(), after.rsplit('=').next());
    assert_eq!(t.wait_exit(STEP), 0);
}

#[test]
fn tilde_dot_after_a_newline_ends_the_session_and_tilde_question_lists_escapes() {
    let sim = sim();
    let mut t = shell(&sim);
    // `~?` right after a newline lists the escapes locally; nothing reaches the remote.
    t.send("\r~?");
    t.expect(r"terminate the session");
    // A tilde inside a line is just a character.
    t.send("echo a~b\r");
    t.expect("a~b");
    prompt(&mut t);
    t.send("~.");
    assert_eq!(t.wait_exit(STEP), 255, "{}", t.text());
    assert!(
        t.text().contains("session terminated by escape sequence"),
        "{}",
        t.text()
    );
}

#[test]
fn escape_none_sends_tilde_dot_to_the_remote() {
    let sim = sim();
    let mut cmd = sim.rssm();
    cmd.args(["shell", "--escape", "none", "i-0123456789abcdef0"]);
    let mut t = Term::spawn(cmd);
    t.expect(r"[#$] $");
    set_prompt(&mut t);
    t.send("~.\r");
    // The shell gets `~.` as a command (not found) and stays open.
    t.expect(r"not found");
    prompt(&mut t);
    t.send("exit\r");
    assert_eq!(t.wait_exit(STEP), 0, "{}", t.text());
}

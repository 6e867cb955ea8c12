//! The real AWS CLI (v1, from PyPI) running rssm as its `session-manager-plugin`: the link that
//! `rssm install-plugin` makes sits in a directory first on PATH, and the CLI hands it the
//! sessions the simulator starts exactly as it would hand them to the official plugin
//! (PROTOCOL.md §11). Every wait is bounded, everything stays on loopback, and a missing `aws`
//! fails the tests (scripts/test.sh installs it).

mod common;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::ecs_front::{ecs_task, EcsFront};
use common::forward::read_digest;
use common::run_bounded;
use common::sshd::{require, ssh_opts, start_sshd};
use common::term::Term;
use common::{rssm_path, Sim, TempDir, DEMO};
use rssm_sim::state::SessionStatus;
use rssm_sim::SimConfig;
use rssm_testkit::lines::Lines;
use rssm_testkit::net::{connect, echo_server, free_port};
use rssm_testkit::{pattern, wait};
use sha2::{Digest, Sha256};

/// Longest wait for anything that should be quick (a line, a connection, an exit). The CLI
/// itself takes about half a second to start.
const WAIT: Duration = Duration::from_secs(30);

/// How long a port forward may take to end after Ctrl-C.
const CTRL_C_EXIT: Duration = Duration::from_secs(5);

/// The name the AWS CLI executes.
const PLUGIN: &str = "session-manager-plugin";

/// The variable newer CLIs put the StartSession response in (its name is argv[1]).
const RESPONSE_VAR: &str = "AWS_SSM_START_SESSION_RESPONSE";

/// What the official plugin prints without arguments; `aws ecs execute-command` runs that check.
const INSTALLED: &str =
    "\nThe Session Manager plugin was installed successfully. Use the AWS CLI to start a session.\n\n";

// ---------------------------------------------------------------------------------------------
// The CLI and the plugin directory

/// The AWS CLI on PATH. Its absence fails the test: these tests never skip.
fn aws_cli() -> &'static Path {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path)
            .map(|d| d.join("aws"))
            .find(|p| p.is_file());
        let works = |p: &PathBuf| {
            Command::new(p)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success())
        };
        match found {
            Some(p) if works(&p) => p,
            _ => panic!(
                "the AWS CLI (`aws`) is required for these tests and does not run from PATH: \
                 scripts/test.sh installs it (python3 -m venv …; pip install awscli)"
            ),
        }
    })
}

/// A temporary directory holding the `session-manager-plugin` link made by
/// `rssm install-plugin --dir`.
fn install_plugin() -> TempDir {
    let dir = TempDir::new("plugin");
    let out = common::rssm()
        .args(["install-plugin", "--dir"])
        .arg(&dir.0)
        .output()
        .expect("rssm install-plugin runs");
    assert!(
        out.status.success(),
        "install-plugin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// PATH with `dir` first, so the CLI runs the plugin found there.
fn path_with(dir: &Path) -> OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&rest)))
        .expect("PATH")
}

/// The environment of the CLI (and so of the plugin it runs): the simulator's credentials,
/// region and endpoints, no config or credentials files, no profile, `plugin_dir` first on PATH.
fn cli_env(cmd: &mut Command, sim: &Sim, plugin_dir: &Path) {
    sim.apply_env(cmd);
    cmd.env("PATH", path_with(plugin_dir))
        .env("AWS_MAX_ATTEMPTS", "1");
}

/// `aws ssm start-session --target DEMO --endpoint-url SIM ARGS…`. The endpoint is explicit:
/// CLI releases older than botocore's service-specific endpoints ignore `AWS_ENDPOINT_URL_SSM`.
fn start_session(sim: &Sim, plugin_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(aws_cli());
    cli_env(&mut cmd, sim, plugin_dir);
    cmd.args(["ssm", "start-session", "--target", DEMO, "--endpoint-url"])
        .arg(sim.sim.endpoint())
        .args(args);
    cmd
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A CLI run with piped output: stdout line by line, stderr collected; in a process group of
/// its own, as a terminal's foreground job is, and killed with that group when dropped.
struct Running {
    child: Child,
    /// Its stdout, every line seen so far.
    stdout: Lines,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("the AWS CLI starts");
        let stdout = Lines::read(child.stdout.take().expect("stdout piped"));
        let mut err = child.stderr.take().expect("stderr piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a stdout line matching `pred` (looking at lines already seen first).
    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        match self.stdout.find(WAIT, pred) {
            Ok(line) => line,
            Err(e) => panic!(
                "no line {what} within {WAIT:?} ({e:?}); stdout {:?}; stderr {:?}",
                self.stdout.seen,
                self.stderr()
            ),
        }
    }

    /// Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group. The CLI
    /// ignores it while the plugin runs (PROTOCOL.md §11.2), so the plugin decides.
    fn ctrl_c(&self) {
        // SAFETY: kill(2) on the process group of our own child.
        let rc = unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGINT) };
        assert_eq!(rc, 0, "SIGINT delivered");
    }

    /// Waits up to `limit` for the CLI to exit, then for the rest of its output.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = &mut self.child;
        let status = wait::until("the CLI's exit", limit, || {
            child.try_wait().expect("wait works")
        });
        // The plugin shares the pipes: end of stdout means it is gone too.
        if let Err(e) = self.stdout.read_to_end(WAIT) {
            panic!(
                "the CLI exited, its stdout did not end ({e:?}): {:?}",
                self.stdout.seen
            );
        }
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The argv of the `session-manager-plugin` process in process group `pgid`, as the CLI ran it.
fn plugin_argv(pgid: u32) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let dir = entry.path();
            let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
                continue;
            };
            // Fields after the parenthesised command name: state, ppid, pgrp, …
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                continue;
            };
            if after.split(' ').nth(2) != Some(&pgid.to_string()) {
                continue;
            }
            let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
                continue;
            };
            // NUL-terminated arguments.
            let argv: Vec<String> = cmdline
                .strip_suffix(b"\0")
                .unwrap_or(&cmdline)
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if argv.first().is_some_and(|a| a.ends_with(PLUGIN)) {
                return argv;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {PLUGIN} process in group {pgid}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Simulator views, TCP helpers

/// The only session the simulator knows: (id, target, document name).
fn the_session(sim: &Sim) -> (String, String, String) {
    let sessions = sim.sim.state().sessions();
    assert_eq!(sessions.len(), 1, "one session: {:?}", sessions.keys());
    let (id, record) = sessions.iter().next().expect("one session");
    (
        id.clone(),
        record.target.clone(),
        record.plan.document_name.clone(),
    )
}

/// Waits until the simulator has the session ended (the plugin called TerminateSession).
fn wait_terminated(sim: &Sim, id: &str) {
    wait::until_true(&format!("session {id} terminated"), WAIT, || {
        sim.sim.state().sessions()[id].status == SessionStatus::Terminated
    });
}

/// Sends 8 MiB of pseudo-random bytes through `addr` (then half-closes) while reading the echo,
/// and checks its length and sha256.
fn echo_8_mib(addr: SocketAddr) {
    const TOTAL: usize = 8 << 20;
    let stream = connect(addr, WAIT);
    let mut writer = stream.try_clone().expect("clone");
    let data = pattern(8, TOTAL);
    let (sent, (received, len)) = thread::scope(|scope| {
        let sender = scope.spawn(|| {
            writer.write_all(&data).expect("write through the forward");
            writer.shutdown(Shutdown::Write).expect("half-close");
            Sha256::digest(&data)
        });
        let received = read_digest(&stream, TOTAL);
        (sender.join().expect("sender"), received)
    });
    assert_eq!(len, TOTAL, "bytes echoed");
    assert_eq!(sent, received, "sha256 of the echo");
}

// ---------------------------------------------------------------------------------------------
// The tests

/// The CLI's `VersionRequirement`: does it pass the response by env var to this plugin version?
fn cli_uses_the_env_var_form(version: &str) -> bool {
    let v: String = version.split_whitespace().collect();
    let parts: Option<Vec<u64>> = v.split('.').map(|p| p.parse().ok()).collect();
    match parts {
        Some(mut parts) if (1..=4).contains(&parts.len()) => {
            let mut min = vec![1, 2, 497, 0];
            let n = parts.len().max(min.len());
            parts.resize(n, 0);
            min.resize(n, 0);
            parts > min
        }
        _ => false,
    }
}

#[test]
fn install_plugin_makes_an_idempotent_link_and_keeps_another_plugin() {
    let dir = TempDir::new("install");
    for run in 0..2 {
        let out = common::rssm()
            .args(["install-plugin", "--dir"])
            .arg(&dir.0)
            .output()
            .expect("rssm runs");
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let link = dir.0.join(PLUGIN);
    let rssm = rssm_path().canonicalize().expect("rssm binary");
    assert_eq!(link.canonicalize().expect("link resolves"), rssm);
    assert!(std::fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());

    // What the CLI checks before it starts a session.
    let out = Command::new(&link).output().expect("the link runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), INSTALLED);
    assert!(out.status.success());
    let out = Command::new(&link)
        .arg("--version")
        .output()
        .expect("the link runs");
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success());
    assert!(
        cli_uses_the_env_var_form(&version),
        "{version:?}: the CLI would pass the response as JSON"
    );
    assert!(!cli_uses_the_env_var_form("1.2.497.0"));
    assert!(cli_uses_the_env_var_form("1.2.497.1\n"));

    // Another plugin in the way: kept unless --force.
    let other = TempDir::new("official");
    let official = other.0.join(PLUGIN);
    std::fs::write(&official, "#!/bin/sh\necho official\n").expect("write");
    let out = common::rssm()
        .args(["install-plugin", "--dir"])
        .arg(&other.0)
        .output()
        .expect("rssm runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "stderr {stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&official).expect("still there"),
        "#!/bin/sh\necho official\n"
    );
    let out = common::rssm()
        .args(["install-plugin", "--force", "--dir"])
        .arg(&other.0)
        .output()
        .expect("rssm runs");
    assert!(out.status.success());
    assert_eq!(official.canonicalize().expect("link resolves"), rssm);
}

#[test]
fn aws_ssm_start_session_runs_a_shell_on_a_pty() {
    let sim = Sim::with_config(SimConfig {
        shell: Some("/bin/sh".into()),
        ..SimConfig::default()
    });
    let plugin = install_plugin();
    let mut term = Term::spawn(start_session(&sim, &plugin.0, &[]));
    term.expect("Starting session with SessionId: ");
    term.expect(r"[#$] $");
    term.send("echo cli-$((6*7))\r");
    term.expect("cli-42");
    term.send("exit\r");
    // The CLI turns any non-zero plugin status into its own error (255); a shell ends with 0.
    assert_eq!(term.wait_exit(WAIT), 0, "output {:?}", term.text());
    let (id, target, document) = the_session(&sim);
    assert_eq!(target, DEMO);
    assert_eq!(document, "SSM-SessionManagerRunShell");
    wait_terminated(&sim, &id);
}

#[test]
fn aws_ssm_start_session_runs_a_kms_encrypted_shell() {
    // The account's preference encrypts the shell: rssm, as the CLI's plugin, binds the data key
    // to the session and the Target of the CLI's request (the agent's KMS Decrypt checks both)
    // and reaches KMS through AWS_ENDPOINT_URL_KMS, as any SDK client would.
    let sim = Sim::with_config(SimConfig {
        shell: Some("/bin/sh".into()),
        shell_kms_key_id: Some("alias/rssm-cli-test".into()),
        ..SimConfig::default()
    });
    let plugin = install_plugin();
    let mut term = Term::spawn(start_session(&sim, &plugin.0, &[]));
    term.expect("Starting session with SessionId: ");
    term.expect("This session is encrypted using AWS KMS.");
    term.expect(r"[#$] $");
    term.send("echo kms-$((6*7))\r");
    term.expect("kms-42");
    term.send("exit\r");
    assert_eq!(term.wait_exit(WAIT), 0, "output {:?}", term.text());
    let (id, _, _) = the_session(&sim);
    wait_terminated(&sim, &id);
}

/// `aws ssm start-session --document-name DOCUMENT` forwarding a local port to an echo server:
/// the official lines on stdout, 8 MiB intact, Ctrl-C ends it cleanly.
fn forwards_8_mib_and_ends_on_ctrl_c(document: &str, host: Option<&str>) {
    let sim = Sim::with_config(SimConfig {
        agent_read_pause: Duration::ZERO,
        ..SimConfig::default()
    });
    let plugin = install_plugin();
    let echo = echo_server(b"");
    let local = free_port();
    let mut parameters = format!("portNumber={echo},localPortNumber={local}");
    if let Some(host) = host {
        parameters = format!("host={host},{parameters}");
    }
    let cmd = start_session(
        &sim,
        &plugin.0,
        &["--document-name", document, "--parameters", &parameters],
    );
    let mut cli = Running::spawn(cmd);
    let starting = cli.wait_line("Starting session", |l| l.starts_with("Starting session"));
    let id = starting
        .strip_prefix("Starting session with SessionId: ")
        .unwrap_or_else(|| panic!("unexpected {starting:?}"))
        .to_owned();
    cli.wait_line("Port … opened", |l| {
        l == format!("Port {local} opened for sessionId {id}.")
    });
    cli.wait_line("Waiting for connections", |l| {
        l == "Waiting for connections..."
    });

    // The CLI found the plugin new enough for the env-var form, and passed the rest in order.
    let argv = plugin_argv(cli.child.id());
    assert_eq!(argv.len(), 7, "{argv:?}");
    assert_eq!(argv[1..5], [RESPONSE_VAR, "us-east-1", "StartSession", ""]);
    let request: serde_json::Value = serde_json::from_str(&argv[5]).expect("request JSON");
    assert_eq!(request["Target"], DEMO);
    assert_eq!(request["DocumentName"], document);
    assert_eq!(request["Parameters"]["portNumber"][0], echo.to_string());
    assert_eq!(argv[6], sim.sim.endpoint());
    let (_, target, started) = the_session(&sim);
    assert_eq!((target.as_str(), started.as_str()), (DEMO, document));

    echo_8_mib(SocketAddr::from((Ipv4Addr::LOCALHOST, local)));

    cli.ctrl_c();
    let status = cli.wait_exit(CTRL_C_EXIT);
    assert!(
        status.success(),
        "exit {status:?}; stdout {:?}; stderr {:?}",
        cli.stdout.seen,
        cli.stderr()
    );
    cli.wait_line("Terminate signal", |l| {
        l == "Terminate signal received, exiting."
    });
    cli.wait_line("Exiting session", |l| {
        l == format!("Exiting session with sessionId: {id}.")
    });
    wait_terminated(&sim, &id);
    TcpListener::bind((Ipv4Addr::LOCALHOST, local)).expect("the local port is free again");
    // Neither the CLI nor rssm had anything to add.
    assert_eq!(cli.stderr(), "", "stderr");
}

#[test]
fn aws_ssm_port_forwarding_carries_8_mib_and_ends_on_ctrl_c() {
    forwards_8_mib_and_ends_on_ctrl_c("AWS-StartPortForwardingSession", None);
}

#[test]
fn aws_ssm_port_forwarding_to_a_remote_host_carries_8_mib_and_ends_on_ctrl_c() {
    forwards_8_mib_and_ends_on_ctrl_c(
        "AWS-StartPortForwardingSessionToRemoteHost",
        Some("127.0.0.1"),
    );
}

#[test]
fn ssh_with_the_documented_proxycommand_returns_the_remote_exit_code() {
    let sim = Sim::start();
    let sshd = start_sshd();
    let plugin = install_plugin();
    // The line from AWS's documentation, plus the simulator's endpoint.
    let proxy = format!(
        "sh -c \"aws ssm start-session --target %h --document-name AWS-StartSSHSession \
         --parameters 'portNumber=%p' --endpoint-url {}\"",
        sim.sim.endpoint()
    );
    let mut ssh = Command::new(require("ssh"));
    cli_env(&mut ssh, &sim, &plugin.0);
    // `aws` itself is looked up on PATH by the ProxyCommand's shell: the one found here.
    ssh.args(ssh_opts(&sshd, &proxy))
        .args(["-p", &sshd.port.to_string()])
        .arg(format!("{}@{DEMO}", sshd.user))
        .arg("echo via-cli; exit 6");
    let out = run_bounded(ssh, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "via-cli\n",
        "stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(6), "stderr: {stderr}");
    // stdout carries the SSH stream: the plugin's greeting goes to stderr, and nothing else.
    assert!(
        stderr
            .trim()
            .starts_with("Starting session with SessionId: ")
            && stderr.trim().lines().count() == 1,
        "stderr: {stderr:?}"
    );
    let (_, target, document) = the_session(&sim);
    assert_eq!(
        (target.as_str(), document.as_str()),
        (DEMO, "AWS-StartSSHSession")
    );
}

#[test]
fn aws_ecs_execute_command_runs_the_command_in_the_container() {
    let sim = Sim::start();
    let plugin = install_plugin();
    let front = EcsFront::start(&sim, "web");
    let (cluster, task, runtime) = ecs_task(&sim);
    let mut cmd = Command::new(aws_cli());
    cli_env(&mut cmd, &sim, &plugin.0);
    cmd.args(["ecs", "execute-command", "--endpoint-url", &front.endpoint])
        .args(["--cluster", &cluster, "--task", &task, "--container", "web"])
        .args(["--interactive", "--command", "echo ecs-$((6*7))"]);
    let mut term = Term::spawn(cmd);
    // The CLI's install check (the plugin without arguments), then the session.
    term.expect("The Session Manager plugin was installed successfully");
    term.expect("Starting session with SessionId: ");
    term.expect("ecs-42");
    assert_eq!(term.wait_exit(WAIT), 0, "output {:?}", term.text());
    let (id, target, document) = the_session(&sim);
    assert_eq!(target, format!("ecs:{cluster}_{task}_{runtime}"));
    assert_eq!(document, "AmazonECS-ExecuteInteractiveCommand");
    wait_terminated(&sim, &id);
    // The plugin sent TerminateSession to the endpoint the CLI gave it: ECS's.
    let targets = front.targets();
    for want in [
        "AmazonEC2ContainerServiceV20141113.ExecuteCommand",
        "AmazonEC2ContainerServiceV20141113.DescribeTasks",
        "AmazonSSM.TerminateSession",
    ] {
        assert!(targets.iter().any(|t| t == want), "no {want}: {targets:?}");
    }
}

#[test]
fn an_older_plugin_version_gets_the_response_as_plain_json() {
    let sim = Sim::start();
    let old = old_plugin_wrapper();
    let cmd = start_session(
        &sim,
        &old.0,
        &[
            "--document-name",
            "AWS-StartNonInteractiveCommand",
            "--parameters",
            r#"{"command": ["sh -c 'echo json-$((6*7))'"]}"#,
        ],
    );
    let out = run_bounded(cmd, WAIT);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout {stdout:?}; stderr {stderr:?}");
    assert!(stdout.contains("json-42"), "stdout {stdout:?}");
    let arg = std::fs::read_to_string(old.0.join("response-arg")).expect("argv[1] recorded");
    assert!(
        arg.starts_with(r#"{"SessionId": ""#) && arg.contains(r#""TokenValue": ""#),
        "argv[1] {arg:?}"
    );
}

/// A `session-manager-plugin` that reports an old version (so the CLI passes the response JSON
/// itself) and records its argv[1] before running `rssm plugin`.
fn old_plugin_wrapper() -> TempDir {
    // What the CLI does for official plugins up to 1.2.497.0: the JSON itself as argv[1].
    let old = TempDir::new("old-plugin");
    let script = old.0.join(PLUGIN);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 1.2.0.0; exit 0; fi\n\
             printf '%s' \"$1\" > '{}/response-arg'\nexec '{}' plugin \"$@\"\n",
            old.0.display(),
            rssm_path().display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    old
}

/// A command that prints `bye` and exits 3, through the CLI and the plugin in `dir`, with a
/// document that reports exit statuses; checks `bye` arrived, returns the output and stderr.
fn exits_3_through_the_cli(sim: &Sim, dir: &Path) -> (std::process::Output, String) {
    let cmd = start_session(
        sim,
        dir,
        &[
            "--document-name",
            "AWS-StartNonInteractiveCommand",
            "--parameters",
            // The document's default (false) merges the output and reports no status.
            r#"{"command": ["sh -c 'echo bye; exit 3'"], "separateOutputStream": ["true"]}"#,
        ],
    );
    let out = run_bounded(cmd, WAIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("bye"), "stdout {stdout:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

#[test]
fn with_the_token_in_argv_a_failing_status_is_reported_by_rssm_not_the_cli() {
    // The CLI prints the plugin's whole argv on a non-zero status; in the JSON form that holds
    // the session token, so rssm reports the status itself and exits 0 (PROTOCOL.md §11).
    let sim = Sim::start();
    let old = old_plugin_wrapper();
    let (out, stderr) = exits_3_through_the_cli(&sim, &old.0);
    assert_eq!(out.status.code(), Some(0), "stderr {stderr:?}");
    assert!(stderr.contains("rssm: exit status 3"), "stderr {stderr:?}");
    assert!(!stderr.contains("TokenValue"), "stderr {stderr:?}");
    assert!(!stderr.contains("returned non-zero"), "stderr {stderr:?}");
}

#[test]
fn a_remote_exit_status_reaches_the_cli_without_the_token() {
    let sim = Sim::start();
    let plugin = install_plugin();
    let (out, stderr) = exits_3_through_the_cli(&sim, &plugin.0);
    // check_call: any non-zero plugin status becomes the CLI's error, exit 255, naming argv —
    // which in the env-var form holds the variable's name, not the session token.
    assert_eq!(out.status.code(), Some(255), "stderr {stderr:?}");
    assert!(
        stderr.contains("returned non-zero exit status 3"),
        "stderr {stderr:?}"
    );
    assert!(stderr.contains(RESPONSE_VAR), "stderr {stderr:?}");
    assert!(!stderr.contains("TokenValue"), "stderr {stderr:?}");
}

#[test]
fn a_malformed_argument_is_one_line_on_stderr_and_a_failure() {
    let plugin = install_plugin();
    let link = plugin.0.join(PLUGIN);
    let unset = format!("{RESPONSE_VAR}_NOT_SET");
    for (response, want) in [
        ("{not json", "not valid JSON"),
        (r#"{"SessionId": "s-1"}"#, "no TokenValue"),
        (unset.as_str(), "is not set"),
    ] {
        let mut cmd = Command::new(&link);
        cmd.env_remove(&unset)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .args([response, "us-east-1", "StartSession", ""])
            .arg(format!(r#"{{"Target": "{DEMO}"}}"#))
            .arg("http://127.0.0.1:9");
        let out = run_bounded(cmd, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{response}: succeeded");
        assert!(out.stdout.is_empty(), "{response}: stdout {:?}", out.stdout);
        assert_eq!(stderr.lines().count(), 1, "{response}: stderr {stderr:?}");
        assert!(stderr.contains(want), "{response}: stderr {stderr:?}");
    }
}

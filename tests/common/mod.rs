//! Shared helpers for the end-to-end tests: an in-process simulator and the real rssm binary.

#![allow(dead_code)]

pub mod ecs_front;
pub mod forward;
pub mod sshd;
pub mod term;
pub mod tinyproxy;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rssm_sim::{SimConfig, Simulator};
use rssm_testkit::logs::Logs;

/// The simulator's online demo instance.
pub const DEMO: &str = "i-0123456789abcdef0";

/// A simulator running on its own runtime for the duration of a test.
pub struct Sim {
    pub sim: Simulator,
    pub env: Vec<(&'static str, String)>,
    /// The simulator's log (INFO and above): it says when a fault strikes.
    pub logs: Logs,
    rt: tokio::runtime::Runtime,
}

impl Sim {
    pub fn start() -> Sim {
        Sim::with_config(SimConfig::default())
    }

    /// Without the agent's 1 ms pause per 1024-byte read (the real agent's ~1 MB/s pacing),
    /// for tests that move bulk data.
    pub fn uncapped() -> Sim {
        Sim::with_config(SimConfig {
            agent_read_pause: Duration::ZERO,
            ..SimConfig::default()
        })
    }

    pub fn with_config(config: SimConfig) -> Sim {
        let logs = Logs::new();
        let on_thread = logs.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .on_thread_start(move || on_thread.install_for_this_thread())
            .build()
            .expect("tokio runtime");
        let sim = rt
            .block_on(Simulator::start(config))
            .expect("simulator starts");
        let mut env = sim.env();
        if sim.config().agent_read_pause.is_zero() {
            // A simulator without the agent's pacing is for bulk tests: no client pacing either
            // (rssm's default keeps under the real service's ~1000 messages/s).
            env.push(("RSSM_MAX_MSG_RATE", "0".into()));
        }
        Sim { sim, env, logs, rt }
    }

    /// The id of an instance of the fleet whose agent is offline.
    pub fn offline_target(&self) -> String {
        self.sim
            .config()
            .fleet
            .targets
            .iter()
            .find(|t| !t.is_online())
            .expect("the default fleet has an offline instance")
            .id
            .clone()
    }

    /// `rssm` with a clean AWS environment pointing at this simulator.
    pub fn rssm(&self) -> Command {
        let mut cmd = rssm();
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The environment as `KEY=VALUE` pairs for processes that spawn rssm themselves (ssh).
    pub fn apply_env(&self, cmd: &mut Command) {
        clean_aws_env(cmd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }
}

/// The rssm binary under test with no AWS settings from the developer's environment.
pub fn rssm() -> Command {
    let mut cmd = Command::new(rssm_path());
    clean_aws_env(&mut cmd);
    cmd
}

pub fn rssm_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rssm"))
}

fn clean_aws_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    // No shared config or credentials files from the machine running the tests.
    cmd.env("AWS_CONFIG_FILE", "/dev/null");
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    // Nor the developer's config file or proxies (the tests that want them set them).
    cmd.env("RSSM_CONFIG", "/dev/null");
    for name in rssm::http_proxy::PROXY_VARS
        .into_iter()
        .chain(rssm::http_proxy::NO_VARS)
    {
        cmd.env_remove(name);
    }
}

/// A fresh temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "rssm-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` (stdin empty, output collected) in a process group of its own; after `limit` the
/// whole group (the ProxyCommand and what it started too) is killed and the test fails.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().expect("starts");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the process group of our own child.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "timed out after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

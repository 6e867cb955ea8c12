//! `rssm-sim serve`: run the simulator until killed, printing the environment a client needs.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rssm_sim::{FaultConfig, Fleet, SimConfig, Simulator};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A local Session Manager: SSM API, data-channel gateway and simulated agents, with faults.
#[derive(Parser)]
#[command(name = "rssm-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and gateway until killed; prints `export` lines for the client on stdout.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Fleet file (TOML `[[target]]` tables or JSON `{"targets": [...]}`); built-in fleet otherwise.
    #[arg(long)]
    fleet: Option<PathBuf>,
    /// Region the endpoints claim to be in.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Access key id to accept (default: a random one per run, printed in the export lines).
    #[arg(long)]
    access_key_id: Option<String>,
    /// Secret access key to accept (default: a random one per run).
    #[arg(long)]
    secret_access_key: Option<String>,
    /// Accept AWS's well-known example key pair instead of random keys (for tests and scripts
    /// that cannot read the export lines). Anyone on this machine can then use the simulator,
    /// whose agent runs shells as you.
    #[arg(long, conflicts_with_all = ["access_key_id", "secret_access_key"])]
    fixed_credentials: bool,
    /// Accept websocket upgrades without a SigV4 signature (plugins older than 1.2.764.0).
    #[arg(long)]
    allow_unsigned_websocket: bool,
    /// KMS key for the default shell document (encrypts shell sessions).
    #[arg(long)]
    shell_kms_key_id: Option<String>,
    /// Idle timeout in seconds.
    #[arg(long, default_value_t = 1200)]
    idle_timeout: u64,
    /// Maximum session duration in seconds (unlimited when absent).
    #[arg(long)]
    max_session_duration: Option<u64>,
    /// Shell for Standard_Stream sessions (default: $SHELL or /bin/sh).
    #[arg(long)]
    shell: Option<String>,
    /// Milliseconds the agent pauses after each 1024-byte read (shell, basic/SSH port, smux
    /// output), like the real agent (1); 0 lifts that ~1 MB/s cap for bulk tests and benchmarks.
    #[arg(long, default_value_t = 1)]
    agent_read_pause_ms: u64,
    /// Do not send the agent pause_publication while the client is away (by default the
    /// gateway does, and the agent's separate-output pipe readers then stop for good).
    #[arg(long)]
    no_agent_pause: bool,
    /// PATH for the commands and shells the agent starts (default: the simulator's own), to
    /// model an instance without some tools.
    #[arg(long, value_name = "PATH")]
    agent_path: Option<String>,
    /// Seconds a key sent with EC2 Instance Connect stays valid (the service's 60).
    #[arg(long, default_value_t = 60)]
    instance_connect_key_ttl_secs: u64,
    /// Log level on stderr (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
    #[command(flatten)]
    faults: FaultArgs,
}

#[derive(Args)]
struct FaultArgs {
    /// Seed for all random fault decisions, so failures reproduce.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Probability (0..1) that a frame is dropped.
    #[arg(long, default_value_t = 0.0)]
    drop: f64,
    /// Probability (0..1) that a frame is delivered twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability (0..1) that a frame is delivered after its successor.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// One-way latency in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Flip one byte of the first Output payload each session's agent sends (digest recomputed):
    /// a KMS-encrypted session must reject it.
    #[arg(long)]
    tamper_output: bool,
    /// Client stream messages per second per session (acks not counted) before throttling (the
    /// service allows ~1000).
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Kill the client websocket after this many frames.
    #[arg(long)]
    kill_after_messages: Option<u64>,
    /// Kill the client websocket this many seconds after it opened.
    #[arg(long)]
    kill_after_secs: Option<f64>,
    /// How many times the kill faults fire per session.
    #[arg(long, default_value_t = 1)]
    kill_times: u32,
    /// The kill faults blackhole the client's websocket instead of dropping it: the connection
    /// stays open but the gateway stops relaying on it and answers no pings.
    #[arg(long)]
    blackhole: bool,
    /// Tokens expire after this many seconds (reconnects need ResumeSession).
    #[arg(long)]
    token_ttl_secs: Option<f64>,
    /// The agent's websocket drops this many seconds into each session …
    #[arg(long)]
    agent_disconnect_after_secs: Option<f64>,
    /// … for this many seconds.
    #[arg(long, default_value_t = 2.0)]
    agent_disconnect_for_secs: f64,
    /// The agent restarts this many seconds into the first session (once): that session ends and
    /// StartSession answers TargetNotConnected for its target …
    #[arg(long)]
    agent_restart_after_secs: Option<f64>,
    /// … for this many seconds.
    #[arg(long, default_value_t = 5.0)]
    agent_restart_for_secs: f64,
    /// API operations (e.g. TerminateSession) that are received but never answered, like an
    /// endpoint behind a dead proxy (repeatable).
    #[arg(long = "hang-api", value_name = "OPERATION")]
    hang_api: Vec<String>,
    /// An API operation that answers only after SECS seconds (OPERATION=SECS).
    #[arg(long = "delay-api", value_name = "OPERATION=SECS")]
    delay_api: Option<String>,
    /// A hostile agent: far-future-sequence, near-future-flood, oversized-frame or
    /// smux-syn-flood.
    #[arg(long, value_name = "MODE")]
    hostile: Option<rssm_sim::Hostile>,
}

fn secs(s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).context("durations must be non-negative seconds")
}

fn probability(name: &str, p: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&p),
        "--{name} must be between 0 and 1, got {p}"
    );
    Ok(p)
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<SimConfig> {
        let mut c = SimConfig {
            listen: self.listen,
            region: self.region,
            require_signed_websocket: !self.allow_unsigned_websocket,
            shell_kms_key_id: self.shell_kms_key_id,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            max_session_duration: self.max_session_duration.map(Duration::from_secs),
            shell: self.shell,
            agent_read_pause: Duration::from_millis(self.agent_read_pause_ms),
            pause_agent_while_client_away: !self.no_agent_pause,
            agent_path: self.agent_path,
            instance_connect_key_ttl: Duration::from_secs(self.instance_connect_key_ttl_secs),
            seed: self.faults.seed,
            ..SimConfig::default()
        };
        if !self.fixed_credentials {
            c.credentials = rssm_sim::SimCredentials::random();
        }
        if let Some(k) = self.access_key_id {
            c.credentials.access_key_id = k;
        }
        if let Some(s) = self.secret_access_key {
            c.credentials.secret_access_key = s;
        }
        if let Some(path) = &self.fleet {
            c.fleet = Fleet::load(path)?;
        }
        let f = self.faults;
        c.faults = FaultConfig {
            drop: probability("drop", f.drop)?,
            duplicate: probability("duplicate", f.duplicate)?,
            reorder: probability("reorder", f.reorder)?,
            latency: Duration::from_millis(f.latency_ms),
            tamper_output: f.tamper_output,
            rate_limit: f.rate_limit,
            kill_after_messages: f.kill_after_messages,
            kill_after: f.kill_after_secs.map(secs).transpose()?,
            kill_times: f.kill_times,
            expire_tokens_after: f.token_ttl_secs.map(secs).transpose()?,
            agent_disconnect_after: f.agent_disconnect_after_secs.map(secs).transpose()?,
            agent_disconnect_for: secs(f.agent_disconnect_for_secs)?,
            blackhole: f.blackhole,
            agent_restart_after: f.agent_restart_after_secs.map(secs).transpose()?,
            agent_restart_for: secs(f.agent_restart_for_secs)?,
            hang_api: f.hang_api,
            hostile: f.hostile,
            delay_api: f
                .delay_api
                .map(|spec| -> anyhow::Result<(String, Duration)> {
                    let (op, s) = spec
                        .split_once('=')
                        .context("--delay-api takes OPERATION=SECS")?;
                    Ok((
                        op.to_owned(),
                        secs(s.parse().context("--delay-api: SECS")?)?,
                    ))
                })
                .transpose()?,
            ..FaultConfig::default()
        };
        Ok(c)
    }
}

/// Quotes a value for `eval "$(rssm-sim serve)"` when it has shell-special characters.
fn shell_quote(v: &str) -> String {
    let plain = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_./:-+=@%".contains(&b));
    if plain && !v.is_empty() {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(args.log_level)
        .init();
    let config = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let sim = Simulator::start(config).await.context("cannot listen")?;
        // One write: a reader that stops after the lines it wants (`head -n 8`) must not find
        // the rest still being written to its closed pipe.
        let exports: String = sim
            .env()
            .into_iter()
            .map(|(k, v)| format!("export {k}={}\n", shell_quote(&v)))
            .collect();
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(exports.as_bytes()).ok();
        stdout.flush().ok();
        drop(stdout);
        tokio::signal::ctrl_c().await.ok();
        tracing::info!("shutting down");
        sim.shutdown().await;
        anyhow::Ok(())
    })
}

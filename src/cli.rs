//! Command-line interface: every flag defined and documented once.

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::aws::AwsOptions;

/// A fast, native AWS Session Manager client.
///
/// Reach EC2 instances and managed nodes through AWS Systems Manager without inbound ports,
/// bastions or the official plugin: interactive shells, remote commands, SSH ProxyCommand and
/// TCP port forwarding. Credentials and region come from the usual AWS chain (environment,
/// profiles, SSO, IMDS).
#[derive(Debug, Parser)]
#[command(
    name = "rssm",
    version,
    propagate_version = true,
    disable_help_subcommand = true,
    after_help = "Help topics: rssm help targets | exit-codes | environment | config",
    after_long_help = crate::commands::help::TOPIC_HINT
)]
pub struct Cli {
    /// More diagnostics on stderr (-v: info, -vv: debug). Tokens and credentials are never shown.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// AWS named profile to use.
    #[arg(long, global = true)]
    pub profile: Option<String>,

    /// AWS region to use.
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// SSM endpoint URL (e.g. a local rssm-sim); AWS_ENDPOINT_URL_SSM works too.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Seconds a connection to the service may stay silent before rssm counts it as dead and
    /// reconnects: no answer to its keep-alive pings, or data sent but never acknowledged. Pings
    /// go out every 10 s (more often for short timeouts).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub alive_timeout: u64,

    /// Most stream messages per second per session. The service throttles and then closes
    /// sessions that send more than about 1000 a second; rssm paces under that, slowing down
    /// further when the path shows strain (0 = no pacing, for simulators and benchmarks).
    #[arg(long, global = true, value_name = "N", env = "RSSM_MAX_MSG_RATE",
          default_value_t = rssm_protocol::pacing::DEFAULT_MAX_RATE)]
    pub max_msg_rate: u32,

    /// HTTP proxy for the AWS API calls and the data channel, as http://[USER:PASS@]HOST:PORT.
    /// Without it rssm follows HTTPS_PROXY, HTTP_PROXY and ALL_PROXY (wss:// and https:// take
    /// HTTPS_PROXY); NO_PROXY applies either way.
    #[arg(long, global = true, value_name = "URL")]
    pub proxy: Option<String>,

    /// Config file with defaults, host aliases and named forwards (default:
    /// ~/.config/rssm/config.toml, or the platform's config directory; see `rssm help config`).
    #[arg(long, global = true, value_name = "FILE", env = "RSSM_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// When a target name, tag or IP matches several instances, choose one in an interactive
    /// fuzzy picker (on a terminal) instead of failing with the list.
    #[arg(long, global = true)]
    pub pick: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The AWS connection options; fails on a proxy URL rssm cannot use.
    pub fn aws_options(&self) -> anyhow::Result<AwsOptions> {
        let proxy = match &self.proxy {
            Some(url) => Some(crate::http_proxy::ProxyRules::resolve(Some(url))?),
            None => None,
        };
        Ok(AwsOptions {
            profile: self.profile.clone().filter(|p| !p.is_empty()),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            proxy,
            ..AwsOptions::default()
        })
    }

    /// How sessions run: the alive timeout, pacing and whether status notices show.
    pub fn driver_config(&self) -> crate::driver::DriverConfig {
        crate::driver::DriverConfig {
            alive_timeout: std::time::Duration::from_secs(self.alive_timeout),
            max_message_rate: Some(self.max_msg_rate).filter(|&r| r > 0),
            quiet: self.quiet,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Interactive shell on TARGET (`rssm shell i-0123456789abcdef0`).
    Shell(ShellArgs),
    /// Run a command on TARGET; its stdout, stderr and exit code become ours
    /// (`rssm exec i-0123456789abcdef0 -- uname -a`).
    Exec(ExecArgs),
    /// Copy files and directories to or from TARGET, as scp does, with no sshd, no S3 and no
    /// open port: `rssm cp ./app.tar.gz web-1:/tmp/`, `rssm cp web-1:/var/log/app.log .`,
    /// `rssm cp -r web-1:/etc/nginx ./nginx-conf`. Every file is checked end to end (SHA-256)
    /// and appears under its name only when complete.
    Cp(CpArgs),
    /// SSH to TARGET with no setup: the system `ssh` through `rssm proxy`, the host key kept
    /// under the instance id, and a throwaway key pushed with EC2 Instance Connect (valid 60 s).
    /// Everything after TARGET goes to ssh: `rssm ssh web-1`, `rssm ssh admin@10.0.1.23 --
    /// uptime`, `rssm ssh web-1 -L 8080:localhost:80`.
    Ssh(SshArgs),
    /// SSH ProxyCommand: carry stdin/stdout to PORT on HOST (`ProxyCommand rssm proxy %h %p`).
    Proxy(ProxyArgs),
    /// Print a ready ~/.ssh/config block that routes `i-*` and `mi-*` hosts through rssm.
    SshConfig,
    /// Forward local TCP ports through TARGET (`rssm forward i-0123 3389`,
    /// `rssm forward i-0123 -L 5432:db.internal:5432`).
    Forward(ForwardArgs),
    /// A local SOCKS5 proxy whose connections leave from TARGET: `rssm socks 1080 --via web-1`,
    /// then `curl --socks5-hostname 127.0.0.1:1080 http://intranet.internal/`. Each destination
    /// gets a port-forwarding session of its own, shared by its connections while in use.
    Socks(SocksArgs),
    /// Bring up the named forwards of the config file (all of them when none are named) in one
    /// process, with one status display; they re-establish as `forward`'s do
    /// (`rssm up pg web`).
    Up(UpArgs),
    /// The config file: `rssm config check` validates it, `rssm config path` prints where
    /// rssm looks for it.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Start a local simulator and open a shell on its demo instance: try rssm without AWS.
    Demo(DemoArgs),
    /// List managed nodes with their EC2 Name, state, platform, agent version, ping status and
    /// private IP, and running instances that never registered with SSM.
    List {
        /// `table` for people, `json` for tools.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Say why TARGET is unreachable through Session Manager and how to fix it: instance state,
    /// agent registration, instance role, routes, VPC endpoints, security groups, network ACLs,
    /// your credentials and permissions. Exit status 1 when a check fails.
    Doctor(DoctorArgs),
    /// Be the AWS CLI's `session-manager-plugin` (what runs when rssm is invoked under that
    /// name): `rssm plugin RESPONSE REGION StartSession PROFILE REQUEST ENDPOINT`.
    #[command(disable_help_flag = true)]
    Plugin {
        /// The arguments the AWS CLI passes to the plugin.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Make rssm the AWS CLI's session manager plugin: creates a `session-manager-plugin` link to
    /// rssm in DIR (default: the directory rssm is installed in).
    InstallPlugin {
        /// Directory to create the link in; it should be on PATH.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Replace an existing `session-manager-plugin` there (e.g. the official one).
        #[arg(long)]
        force: bool,
    },
    /// Help on a command (`rssm help forward`) or a topic: targets, exit-codes, environment,
    /// config (`rssm help targets`).
    Help {
        /// A topic, or a command (and its subcommand).
        #[arg(value_name = "TOPIC|COMMAND")]
        words: Vec<String>,
    },
    /// Write man pages (rssm.1 and one per command) into DIR, by default share/man/man1 beside
    /// rssm's install directory, where man finds them (`rssm manpages`, then `man rssm-up`).
    Manpages {
        /// Directory to write the pages into.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Print shell completions (`rssm completions bash > /etc/bash_completion.d/rssm`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Decode a recorded data-channel session (JSON lines) frame by frame.
    Trace {
        /// The recording (`{"t_ms","dir","kind","hex"|"text"}` per line).
        file: std::path::PathBuf,
    },
}

/// `rssm config …`.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ConfigAction {
    /// Read the config file and report the first problem (file, line, key), or what it holds.
    Check,
    /// Print the config file's path (whether or not it exists yet).
    Path,
}

/// `rssm up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Forwards to bring up, by their `[forwards.NAME]`; none = every one in the file.
    pub names: Vec<String>,
    #[command(flatten)]
    pub session: SessionArgs,
}

impl Command {
    /// The target of any command that takes one, where a host alias of the config file may
    /// stand in for it.
    pub fn alias_target_mut(&mut self) -> Option<&mut String> {
        match self {
            Command::Doctor(a) => Some(&mut a.target),
            other => other.target_mut(),
        }
    }

    /// The target argument of commands that take one, for name/tag/IP resolution.
    pub fn target_mut(&mut self) -> Option<&mut String> {
        match self {
            Command::Shell(a) => Some(&mut a.target),
            Command::Exec(a) => Some(&mut a.target),
            Command::Cp(a) => a.target_mut(),
            Command::Ssh(a) => Some(&mut a.destination.target),
            Command::Proxy(a) => Some(&mut a.host),
            Command::Forward(a) => Some(&mut a.target),
            Command::Socks(a) => Some(&mut a.via),
            _ => None,
        }
    }
}

/// How `list` and `doctor` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned table (colours on a terminal).
    #[default]
    Table,
    /// JSON on stdout.
    Json,
}

/// `rssm doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The instance: id, Name tag, tag:KEY=VALUE, private IP or DNS name.
    pub target: String,
    /// `table` for people, `json` for tools.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Options shared by commands that start a session.
#[derive(Debug, Args, Clone)]
pub struct SessionArgs {
    /// SSM document to use instead of the command's default.
    #[arg(long, value_name = "NAME")]
    pub document: Option<String>,

    /// Document parameters: JSON (`{"portNumber":["22"]}`) or `key=value[,key=value…]`,
    /// repeatable.
    #[arg(long, value_name = "PARAMS")]
    pub parameters: Vec<String>,

    /// Reason recorded with the session (CloudTrail, session history).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `rssm shell`.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Instance id (`i-…`), managed-node id (`mi-…`), Name tag (`web-1`), `tag:KEY=VALUE`,
    /// private IP, private DNS name, or `ecs:CLUSTER_TASK_RUNTIMEID`.
    pub target: String,
    /// Escape character, as in ssh: after a newline, `~.` ends the session, `~?` lists the
    /// escapes, `~~` sends `~`. `none` disables it; `^X` names a control character.
    #[arg(short = 'e', long, default_value = "~", value_name = "CHAR")]
    pub escape: crate::commands::escape::EscapeChar,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `rssm exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Instance id (`i-…`), managed-node id (`mi-…`), Name tag (`web-1`), `tag:KEY=VALUE`,
    /// private IP, private DNS name, or `ecs:CLUSTER_TASK_RUNTIMEID`.
    pub target: String,
    /// The command; several words are joined with spaces into one shell command line, as ssh does.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `rssm cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Files to copy, then where to: `TARGET:PATH` names a path on TARGET (any target form,
    /// `TARGET:` alone is the remote user's home directory), anything else a local path.
    /// Either the sources or the destination are remote, not both.
    #[arg(required = true, num_args = 2.., value_name = "SOURCE... DEST")]
    pub paths: Vec<crate::commands::cp::Operand>,
    /// Copy directories and what they hold (through tar on the remote side).
    #[arg(short, long)]
    pub recursive: bool,
    /// Sessions to split each large file over (1–16); each session carries its own share of the
    /// service's per-session rate.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..=16))]
    pub sessions: u8,
    /// Reason recorded with the sessions (CloudTrail, session history).
    #[arg(long)]
    pub reason: Option<String>,
}

impl CpArgs {
    /// The target of the remote operands (the first one's: all must name the same target).
    pub fn target_mut(&mut self) -> Option<&mut String> {
        self.paths.iter_mut().find_map(|p| match p {
            crate::commands::cp::Operand::Remote { target, .. } => Some(target),
            crate::commands::cp::Operand::Local(_) => None,
        })
    }
}

/// `rssm ssh`.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// Login name (default: `USER@` in the destination, else the platform's default user:
    /// Amazon Linux ec2-user, Ubuntu ubuntu, Debian admin, …).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Do not push a key: ssh authenticates with what it has (your agent, `-i`, its config).
    #[arg(long)]
    pub no_send_key: bool,
    /// `[USER@]TARGET`, any target form.
    #[arg(value_name = "[USER@]TARGET")]
    pub destination: crate::commands::ssh::Destination,
    /// ssh's own options and the remote command, passed on as they are (`-L …`, `-- uptime`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "SSH ARGS"
    )]
    pub ssh_args: Vec<String>,
}

/// `rssm proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Instance id, Name tag or private IP (ssh's %h).
    pub host: String,
    /// Port on the instance (ssh's %p).
    pub port: u16,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `rssm forward`.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Instance id (`i-…`), managed-node id (`mi-…`), Name tag (`web-1`), `tag:KEY=VALUE`,
    /// private IP, private DNS name, or `ecs:CLUSTER_TASK_RUNTIMEID`.
    pub target: String,
    /// Shorthand for `-L PORT:localhost:PORT`.
    pub port: Option<u16>,
    /// `[BIND:]LPORT:HOST:RPORT` — listen on LPORT (0 picks a free port), connect to HOST:RPORT
    /// from the target. Repeatable. BIND defaults to 127.0.0.1; IPv6 as `[::1]`.
    #[arg(short = 'L', long = "local", value_name = "SPEC")]
    pub local: Vec<String>,
    /// Sessions per forward. The service holds each session to about 1 MB/s; with N sessions,
    /// parallel connections (a browser, parallel downloads, several scp) share N times that,
    /// each new connection going to the least-loaded session.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub sessions: u16,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `rssm socks`.
#[derive(Debug, Args)]
pub struct SocksArgs {
    /// `[BIND:]PORT` to listen on; BIND defaults to 127.0.0.1, IPv6 as `[::1]`, 0 picks a free
    /// port.
    #[arg(value_name = "[BIND:]PORT")]
    pub listen: String,
    /// Where connections leave from: instance id, managed-node id, Name tag, `tag:KEY=VALUE`,
    /// private IP or DNS name.
    #[arg(long, value_name = "TARGET")]
    pub via: String,
    /// Sessions per destination, as with `forward --sessions`.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub sessions: u16,
    /// Most SSM sessions open at once across all destinations; a client asking for a new
    /// destination past it is refused ("general failure") with a line on stderr.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: u32,
    /// Most client connections at once (open, or waiting for their destination's session);
    /// more are refused with a line on stderr.
    #[arg(long, default_value_t = 512, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Require RFC 1929 username/password authentication with this user name; the password
    /// comes from the environment variable RSSM_SOCKS_PASSWORD (never from the command line,
    /// which other local users can read).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `rssm demo`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, disable_help_subcommand = true)]
pub struct DemoArgs {
    /// Run this command on the demo instance instead of opening an interactive shell.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    #[command(subcommand)]
    pub doctor: Option<DemoDoctor>,
}

/// `rssm demo doctor`.
#[derive(Debug, Subcommand)]
pub enum DemoDoctor {
    /// Run `rssm doctor` on the simulator's instances: `demo` passes every check, and each of
    /// `offline`, `no-role`, `no-endpoint`, `no-443` and `no-route` fails the checks its name says.
    Doctor {
        /// One instance (id or Name tag); every instance of the demo fleet when omitted.
        target: Option<String>,
        /// `table` for people, `json` for tools (an array when walking the whole fleet).
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

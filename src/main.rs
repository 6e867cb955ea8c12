//! rssm — a native AWS Session Manager client. See `rssm --help` and the README.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use rssm::cli::{Cli, Command};
use rssm::commands::{self, EXIT_ERROR};
use rssm::{aws, driver, one_line, plugin_args, targets, MAX_MSG_RATE_ENV};

/// The name the AWS CLI executes.
const PLUGIN_NAME: &str = "session-manager-plugin";

fn main() -> ExitCode {
    // As session-manager-plugin (a link) or `rssm plugin …`, the arguments follow the AWS CLI's
    // contract, not ours: hand them over untouched.
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = std::path::Path::new(args.first().map(String::as_str).unwrap_or(""))
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if invoked_as == PLUGIN_NAME {
        return run_plugin(args[1..].to_vec());
    }
    if args.get(1).map(String::as_str) == Some("plugin") {
        return run_plugin(args[2..].to_vec());
    }
    let cli = Cli::parse();
    init_tracing(cli.quiet, cli.verbose);
    block_on(run(cli))
}

/// Runs `fut` on a single-threaded runtime and turns its result into the exit status.
fn block_on(fut: impl std::future::Future<Output = anyhow::Result<u8>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rssm: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(fut) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("rssm: {}", one_line(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The drop-in plugin. Diagnostics: `RSSM_LOG` (e.g. `debug`), since the AWS CLI passes no flags.
fn run_plugin(args: Vec<String>) -> ExitCode {
    let verbose = match std::env::var("RSSM_LOG").as_deref() {
        Ok("debug") | Ok("trace") => 2,
        Ok("info") => 1,
        _ => 0,
    };
    init_tracing(false, verbose);
    // No command line of ours here: the pacing ceiling comes from the environment, if anywhere.
    let mut config = driver::DriverConfig::default();
    if let Some(rate) = std::env::var(MAX_MSG_RATE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        config.max_message_rate = Some(rate).filter(|&r| r > 0);
    }
    // The StartSession response variable holds the session token: read it and take it out of
    // the environment here, before the runtime's threads start (and before any child process
    // could inherit it).
    let response_env = plugin_args::take_response_env(&args);
    block_on(async move { commands::plugin::run(&args, response_env, config).await })
}

async fn run(mut cli: Cli) -> anyhow::Result<u8> {
    let config = cli.driver_config();
    // The config file's defaults and host aliases, under the command line's flags. `rssm up`
    // applies them per forward; `rssm config` reports on the file itself; the drop-in plugin,
    // the demo and the offline commands read none.
    let file = match &cli.command {
        Command::Completions { .. }
        | Command::SshConfig
        | Command::Trace { .. }
        | Command::Demo(_)
        | Command::Plugin { .. }
        | Command::InstallPlugin { .. }
        | Command::Config { .. }
        | Command::Help { .. }
        | Command::Manpages { .. } => rssm::config::Config::default(),
        _ => rssm::config::Config::load(cli.config.as_deref())?,
    };
    if !matches!(cli.command, Command::Up(_)) {
        apply_config(&mut cli, &file);
    }
    // A Name tag, tag:K=V or IP becomes the instance id before any command sees it.
    let (options, pick) = (cli.aws_options()?, cli.pick);
    if let Some(target) = cli.command.target_mut() {
        if !targets::parse(target)?.is_id() {
            let aws = aws::Aws::load(&options).await?;
            *target = targets::resolve(&aws, target, pick).await?;
        }
        // A session command's target is checked before the SDK loads.
        commands::check_target(target)?;
    }
    let load = || aws::Aws::load(&options);
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "rssm", &mut std::io::stdout());
            Ok(0)
        }
        Command::SshConfig => {
            print!("{}", commands::ssh_config::text());
            Ok(0)
        }
        Command::Trace { file } => commands::trace::run(file),
        Command::Help { words } => commands::help::run(words),
        Command::Manpages { dir } => commands::help::manpages(dir.as_deref()),
        Command::Config { action } => commands::config::run(cli.config.as_deref(), *action),
        Command::Up(args) => commands::up::run(&cli, &file, args, config).await,
        Command::Demo(args) => commands::demo::run(&cli, args).await,
        Command::Plugin { args } => {
            // (`rssm -q plugin …`: before this single-threaded runtime has done anything.)
            let response_env = plugin_args::take_response_env(args);
            commands::plugin::run(args, response_env, config).await
        }
        Command::InstallPlugin { dir, force } => {
            commands::install_plugin::run(dir.as_deref(), *force, PLUGIN_NAME)
        }
        Command::List { output } => commands::list::run(&load().await?, *output, cli.quiet).await,
        Command::Doctor(args) => commands::doctor::run(&load().await?, args, pick).await,
        Command::Shell(args) => commands::shell::run(&load().await?, args, config).await,
        Command::Exec(args) => commands::exec::run(&load().await?, args, config).await,
        Command::Cp(args) => commands::cp::run(&load().await?, args, config, cli.quiet).await,
        Command::Proxy(args) => commands::proxy::run(&load().await?, args, config).await,
        Command::Ssh(args) => {
            let flags = commands::ssh::proxy_flags(&cli);
            commands::ssh::run(&load().await?, args, &flags).await
        }
        Command::Forward(args) => commands::forward::run(&load().await?, args, config).await,
        Command::Socks(args) => commands::socks::run(&load().await?, args, config).await,
    }
}

/// Puts the config file's settings into `cli` where its flags left them open, and replaces a
/// host alias with the target it stands for.
fn apply_config(cli: &mut Cli, file: &rssm::config::Config) {
    let flags = rssm::config::Flags {
        profile: cli.profile.as_deref(),
        region: cli.region.as_deref(),
        proxy: cli.proxy.as_deref(),
    };
    let target = cli.command.alias_target_mut().map(|t| t.clone());
    let resolved = file.resolve(flags, target.as_deref(), &rssm::config::env_is_set);
    if let (Some(slot), Some(target)) = (cli.command.alias_target_mut(), resolved.target) {
        *slot = target;
    }
    cli.profile = resolved.profile;
    cli.region = resolved.region;
    cli.proxy = resolved.proxy;
}

/// Diagnostics go to stderr: warnings by default, -v info, -vv debug for rssm's own crates only
/// (SDK internals stay at warn so nothing sensitive is ever traced). `RUST_LOG` overrides.
fn init_tracing(quiet: bool, verbose: u8) {
    use tracing_subscriber::filter::{filter_fn, FilterExt};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,rssm=info,rssm_protocol=info,rssm_sim=info",
        (false, _) => "warn,rssm=debug,rssm_protocol=debug,rssm_sim=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Trace output of the websocket and the AWS SDK holds the session token (the
    // OpenDataChannel frame, StartSessionOutput) and more: none of it unless asked for by name.
    let wire = std::env::var_os(WIRE_LOG_ENV).is_some_and(|v| !v.is_empty());
    if wire {
        eprintln!(
            "rssm: {WIRE_LOG_ENV} is set: trace logs will show session tokens and signed requests"
        );
    }
    let no_secrets = filter_fn(move |meta| {
        wire || *meta.level() != tracing::Level::TRACE || !is_wire_target(meta.target())
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter.and(no_secrets));
    tracing_subscriber::registry().with(layer).init();
}

/// Set (to anything) to let `RUST_LOG=trace` show the websocket's frames and the SDK's
/// requests and responses, secrets included.
const WIRE_LOG_ENV: &str = "RSSM_LOG_WIRE";

/// Crates whose trace events can carry tokens or credentials: the websocket, HTTP, TLS and
/// the AWS SDK.
fn is_wire_target(target: &str) -> bool {
    const WIRE: [&str; 8] = [
        "tungstenite",
        "tokio_tungstenite",
        "aws",
        "hyper",
        "h2",
        "rustls",
        "http",
        "tower",
    ];
    let krate = target.split("::").next().unwrap_or(target);
    WIRE.iter()
        .any(|w| krate == *w || krate.strip_prefix(w).is_some_and(|r| r.starts_with('_')))
}

//! rssm — a native AWS Session Manager client. See `rssm --help` and the README.

mod aws;
mod cli;
mod commands;
mod driver;
mod terminal;
mod trace;
mod transport;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};
use commands::EXIT_ERROR;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
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
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("rssm: {}", one_line(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "rssm", &mut std::io::stdout());
            Ok(0)
        }
        Command::SshConfig => {
            print!("{}", commands::ssh_config::text());
            Ok(0)
        }
        Command::Trace { file } => trace::run(file),
        Command::Demo(args) => commands::demo::run(&cli, args).await,
        Command::Shell(args) => {
            commands::check_target(&args.target)?;
            let aws = aws::Aws::load(&cli.aws_options()).await?;
            commands::shell::run(&aws, args, cli.quiet).await
        }
        Command::Exec(args) => {
            commands::check_target(&args.target)?;
            let aws = aws::Aws::load(&cli.aws_options()).await?;
            commands::exec::run(&aws, args).await
        }
        Command::Proxy(args) => {
            commands::check_target(&args.host)?;
            let aws = aws::Aws::load(&cli.aws_options()).await?;
            commands::proxy::run(&aws, args).await
        }
        Command::Forward(args) => {
            commands::check_target(&args.target)?;
            let aws = aws::Aws::load(&cli.aws_options()).await?;
            commands::forward::run(&aws, args, cli.quiet).await
        }
    }
}

/// Diagnostics go to stderr: warnings by default, -v info, -vv debug for rssm's own crates only
/// (SDK internals stay at warn so nothing sensitive is ever traced). `RUST_LOG` overrides.
fn init_tracing(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,rssm=info,rssm_protocol=info,rssm_sim=info",
        (false, _) => "warn,rssm=debug,rssm_protocol=debug,rssm_sim=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// An error and its causes as one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

//! `rssm demo`: starts the simulator in-process and opens a shell (or runs a command) on its demo
//! instance, so the product can be tried with no AWS account. Everything goes through the same
//! code paths as real sessions: SigV4-signed API calls, the data-channel websocket, the protocol.

use anyhow::{Context, Result};

use crate::aws::{Aws, AwsOptions};
use crate::cli::{Cli, DemoArgs, ExecArgs, SessionArgs, ShellArgs};

/// The simulator's demo instance (Name tag `demo`).
const DEMO_TARGET: &str = "i-0123456789abcdef0";

/// Runs the demo and returns the session's exit status.
pub async fn run(cli: &Cli, args: &DemoArgs) -> Result<u8> {
    let sim = rssm_sim::Simulator::start(rssm_sim::SimConfig::default())
        .await
        .context("cannot start the local simulator")?;
    // The simulator's endpoint and throwaway credentials reach the SDK the way a user's would:
    // through the environment of the default credential chain. This runs before any other
    // thread reads the environment.
    for (key, value) in sim.env() {
        std::env::set_var(key, value);
    }
    std::env::remove_var("AWS_PROFILE");
    if !cli.quiet {
        eprintln!(
            "rssm demo: simulated Session Manager at {} — instance {DEMO_TARGET} (Name=demo).",
            sim.endpoint()
        );
    }
    let aws = Aws::load(&AwsOptions {
        profile: None,
        region: Some(sim.config().region.clone()),
        endpoint_url: Some(sim.endpoint()),
    })
    .await?;
    let session = SessionArgs {
        document: None,
        parameters: Vec::new(),
        reason: Some("rssm demo".into()),
    };
    let code = if args.command.is_empty() {
        if !cli.quiet {
            eprintln!("rssm demo: opening a shell; type `exit` to leave.");
        }
        let shell = ShellArgs {
            target: DEMO_TARGET.into(),
            escape: super::escape::EscapeChar(Some(b'~')),
            session,
        };
        super::shell::run(&aws, &shell, cli.quiet).await
    } else {
        let exec = ExecArgs {
            target: DEMO_TARGET.into(),
            command: args.command.clone(),
            session,
        };
        super::exec::run(&aws, &exec).await
    };
    sim.shutdown().await;
    code
}

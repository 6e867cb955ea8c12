//! `rssm demo`: starts the simulator in-process and opens a shell (or runs a command) on its demo
//! instance, so the product can be tried with no AWS account. Everything goes through the same
//! code paths as real sessions: SigV4-signed API calls, the data-channel websocket, the protocol.

use anyhow::{Context, Result};
use aws_credential_types::Credentials;

use crate::aws::{Aws, AwsOptions};
use crate::cli::{Cli, DemoArgs, DemoDoctor, ExecArgs, SessionArgs, ShellArgs};

/// The simulator's demo instance (Name tag `demo`).
const DEMO_TARGET: &str = "i-0123456789abcdef0";

/// Runs the demo and returns the session's exit status.
pub async fn run(cli: &Cli, args: &DemoArgs) -> Result<u8> {
    // Random credentials for this run only: the simulator's agent starts real shells as the
    // user running the demo, and anyone on this machine could sign requests with fixed keys.
    let config = rssm_sim::SimConfig {
        credentials: rssm_sim::SimCredentials::random(),
        ..rssm_sim::SimConfig::default()
    };
    let sim = rssm_sim::Simulator::start(config)
        .await
        .context("cannot start the local simulator")?;
    if !cli.quiet {
        eprintln!(
            "rssm demo: simulated Session Manager at {} — instance {DEMO_TARGET} (Name=demo).",
            sim.endpoint()
        );
    }
    // The simulator's endpoint and credentials go to the SDK directly, not through the
    // process environment (which other threads may be reading).
    let keys = sim.state().credentials();
    let aws = Aws::load(&AwsOptions {
        profile: None,
        region: Some(sim.config().region.clone()),
        endpoint_url: Some(sim.endpoint()),
        every_endpoint: Some(sim.endpoint()),
        credentials: Some(Credentials::new(
            keys.access_key_id,
            keys.secret_access_key,
            None,
            None,
            "rssm-demo",
        )),
        // The simulator is on this machine's loopback, which no proxy can reach.
        proxy: Some(crate::http_proxy::ProxyRules::direct()),
    })
    .await?;
    let session = SessionArgs {
        document: None,
        parameters: Vec::new(),
        reason: Some("rssm demo".into()),
    };
    let code = if let Some(DemoDoctor::Doctor { target, output }) = &args.doctor {
        super::doctor::demo(&aws, &sim, target.as_deref(), *output).await
    } else if args.command.is_empty() {
        if !cli.quiet {
            eprintln!("rssm demo: opening a shell; type `exit` to leave.");
        }
        let shell = ShellArgs {
            target: DEMO_TARGET.into(),
            escape: super::escape::EscapeChar(Some(b'~')),
            session,
        };
        super::shell::run(&aws, &shell, cli.driver_config()).await
    } else {
        let exec = ExecArgs {
            target: DEMO_TARGET.into(),
            command: args.command.clone(),
            session,
        };
        super::exec::run(&aws, &exec, cli.driver_config()).await
    };
    sim.shutdown().await;
    code
}

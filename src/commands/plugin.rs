//! Drop-in `session-manager-plugin`: when rssm runs under that name (a link made by
//! `rssm install-plugin`) or as `rssm plugin ARGS…`, it takes the AWS CLI's arguments
//! (PROTOCOL.md §11), opens the session the CLI started, and picks shell, port-forwarding or
//! stdio mode from the agent's handshake exactly as the official plugin does (§9.4).
//!
//! Where the official plugin is known to hurt, rssm differs: the remote command's exit code is
//! propagated, a failed first connect ends with an error instead of hanging, duplicates are
//! re-acknowledged, and the terminal is always restored.

use std::io::Write;

use anyhow::{Context, Result};
use rssm_protocol::{SessionType, SessionTypeInfo};

use crate::aws::{Aws, AwsOptions, StartedSession};
use crate::driver::{DriverConfig, End, Output};
use crate::plugin_args::{self, PluginCall, PluginStart};

use super::{open_channel, Connected, EXIT_ERROR};

/// What the official plugin prints when run without arguments; the CLI's install check and
/// install guides look for it.
const INSTALLED: &str =
    "\nThe Session Manager plugin was installed successfully. Use the AWS CLI to start a session.\n\n";

/// Runs the plugin contract on `args` (argv without argv[0]) and returns the exit status.
/// `response_env` is the StartSession response variable the caller took out of the
/// environment (its name and value), when argv names one.
pub async fn run(
    args: &[String],
    response_env: Option<(String, Option<String>)>,
    config: DriverConfig,
) -> Result<u8> {
    let call = plugin_args::parse(args, |name| {
        response_env
            .as_ref()
            .filter(|(n, _)| n == name)
            .and_then(|(_, value)| value.clone())
    })?;
    match call {
        PluginCall::InstallCheck => {
            print!("{INSTALLED}");
            Ok(0)
        }
        PluginCall::Version => {
            // The AWS CLI passes the response by env var only to plugins newer than 1.2.497.0,
            // so report the protocol generation we speak (§11.2).
            println!("{}", rssm_protocol::CLIENT_VERSION);
            Ok(0)
        }
        PluginCall::UnknownOperation(op) => {
            print!("\nUnknown operation {op}. \nUse session-manager-plugin --version to check the version.\n\n");
            Ok(2)
        }
        PluginCall::Start(start) => {
            let token_in_argv = start.token_in_argv;
            let code = match run_session(start, config).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("rssm: {e:#}");
                    EXIT_ERROR
                }
            };
            if token_in_argv && code != 0 {
                // On a non-zero status the AWS CLI prints our whole command line, and here that
                // holds the session token (ECS exec always passes it so). Report the status
                // ourselves and exit 0, as the official plugin always does.
                eprintln!("rssm: exit status {code} (not passed to the AWS CLI, which would print the session token with it)");
                return Ok(0);
            }
            Ok(code)
        }
    }
}

async fn run_session(start: PluginStart, config: DriverConfig) -> Result<u8> {
    let quiet = config.quiet;
    let aws = Aws::load(&AwsOptions {
        profile: start.profile.clone(),
        region: start.region.clone(),
        endpoint_url: start.endpoint_url.clone(),
        ..AwsOptions::default()
    })
    .await?;
    let started = StartedSession {
        session_id: start.session_id.clone(),
        token: start.token.clone(),
        stream_url: start.stream_url.clone(),
    };
    let target = start.target.clone().unwrap_or_default();
    let handle = match open_channel(&aws, config, &target, &started).await {
        Ok(h) => h,
        Err(e) => {
            // The official plugin hangs here; we end the session and say why.
            aws.terminate_session(&started.session_id).await;
            return Err(e);
        }
    };
    let mut conn = Connected {
        aws,
        started,
        handle,
    };
    let mode = learn_kind(&mut conn).await?;
    let id = conn.started.session_id.clone();
    match mode {
        SessionKind::Shell => {
            print_stdout(&format!("\nStarting session with SessionId: {id}\n"));
            // The official plugin has no escape sequences: none in drop-in mode.
            super::shell::run_connected(conn, quiet, None).await
        }
        SessionKind::Stdio => {
            // stdout carries the SSH stream: our line goes to stderr (the plugin's goes to stdout).
            if !quiet {
                eprintln!("\nStarting session with SessionId: {id}");
            }
            super::proxy::run_connected(conn).await
        }
        SessionKind::PortForward(info) => {
            print_stdout(&format!("\nStarting session with SessionId: {id}\n"));
            let local_port = info
                .property("localPortNumber")
                .filter(|p| !p.is_empty())
                .map(|p| p.parse::<u16>())
                .transpose()
                .context("localPortNumber is not a port number")?
                .unwrap_or(0);
            super::forward::run_plugin(conn, info, local_port, quiet).await
        }
        SessionKind::Ended(End::Closed { reason }) => {
            let reason = if reason.is_empty() {
                "closed".into()
            } else {
                reason
            };
            eprintln!("rssm: session {id} ended before it started: {reason}");
            Ok(EXIT_ERROR)
        }
        SessionKind::Ended(End::Failed(reason)) => {
            conn.terminate().await;
            anyhow::bail!("{reason}")
        }
        SessionKind::Ended(End::Finished) => Ok(0),
    }
}

/// How the session will be run.
enum SessionKind {
    Shell,
    Stdio,
    PortForward(SessionTypeInfo),
    Ended(End),
}

/// Reads the first reports until the session type is known (from the handshake, or a shell's
/// first output), then puts them back for the command that runs the session.
async fn learn_kind(conn: &mut Connected) -> Result<SessionKind> {
    let mut seen = Vec::new();
    let mode = loop {
        let Some(out) = conn.handle.output.recv().await else {
            break SessionKind::Ended(End::Failed("the session driver stopped".into()));
        };
        match &out {
            Output::SessionType(info) => {
                let mode = match info.session_type {
                    SessionType::Port => match info.property("type") {
                        Some("LocalPortForwarding") => SessionKind::PortForward(info.clone()),
                        _ => SessionKind::Stdio,
                    },
                    _ => SessionKind::Shell,
                };
                seen.push(out);
                break mode;
            }
            Output::Ended(end) => break SessionKind::Ended(end.clone()),
            _ => seen.push(out),
        }
    };
    conn.handle.output.unread(seen);
    Ok(mode)
}

fn print_stdout(text: &str) {
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

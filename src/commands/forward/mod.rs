//! `rssm forward TARGET [PORT] [-L [BIND:]LPORT:HOST:RPORT]…`: local TCP ports forwarded through
//! the target, ssh `-L` style (PROTOCOL.md §9.4).
//!
//! Every forward gets its own listener (bound first, on 127.0.0.1 unless told otherwise, so a busy
//! port fails before any session starts) and its own session (`--sessions N`: N of them, each new
//! connection going to the least-loaded, see [`lanes`]). Modern agents multiplex any number
//! of connections over the session with smux ([`mux`]); old ones take one at a time ([`basic`]).
//! Ctrl-C ends every session cleanly and exits 0. A session that is gone for good (closed by the
//! service, lost beyond resuming, its agent restarting) is replaced by a new one on the same
//! listener; only when no new session can be had for minutes does the command fail (255).
//!
//! * `spec` — parsing `PORT`/`-L` and choosing the document;
//! * `lanes`, `source` — several sessions behind one listener (`--sessions N`);
//! * `tunnel` — one forward's life: session, handshake, mode, clean close, the next session;
//! * `restart`, `held` — pacing new sessions, and connections waiting for one;
//! * `mux`, `basic`, `conn` — serving connections; `status` — stderr messages and status line;
//! * `plugin` — the same forwarding for the drop-in `session-manager-plugin`.

mod basic;
mod conn;
mod held;
pub(crate) mod lanes;
pub(crate) mod link;
mod mux;
mod plugin;
mod restart;
pub(crate) mod source;
pub mod spec;
pub(crate) mod status;
pub(crate) mod tunnel;
mod turns;
pub(crate) mod voice;

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::aws::Aws;
use crate::cli::{ForwardArgs, SessionArgs};
use crate::driver::DriverConfig;

use self::lanes::{LaneState, Lanes};
use self::source::Source;
use self::spec::ForwardSpec;
use self::status::{Console, Counters};
use self::tunnel::Tunnel;
use super::signals::Signals;
use super::{check_target, EXIT_ERROR};

pub use self::plugin::run_plugin;

/// Exit status after a second Ctrl-C (128 + SIGINT, as shells report it).
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// One forward to serve: where, what, and through which account.
pub struct Planned {
    /// The API client (profile and region) for this forward's sessions.
    pub aws: Aws,
    /// Instance or managed-node id.
    pub target: String,
    /// `--document`, `--parameters`, `--reason`.
    pub session: SessionArgs,
    /// What to forward.
    pub spec: ForwardSpec,
    /// Sessions behind its listener.
    pub sessions: u16,
    /// Its name in the config file (`rssm up`), for messages.
    pub name: Option<String>,
}

/// Forwards until Ctrl-C (exit 0), or until a forward cannot go on: its first session fails, or
/// no new session can be started after one was lost (exit 255).
pub async fn run(aws: &Aws, args: &ForwardArgs, config: DriverConfig) -> Result<u8> {
    check_target(&args.target)?;
    let plans = spec::from_args(args)?
        .into_iter()
        .map(|spec| Planned {
            aws: aws.clone(),
            target: args.target.clone(),
            session: args.session.clone(),
            spec,
            sessions: args.sessions,
            name: None,
        })
        .collect();
    serve(plans, config).await
}

/// Serves every planned forward in one process, with one status display, until Ctrl-C or one
/// of them cannot go on (see [`run`]). Every listener is bound before any session starts.
pub async fn serve(plans: Vec<Planned>, config: DriverConfig) -> Result<u8> {
    let mut listeners = Vec::with_capacity(plans.len());
    for plan in &plans {
        let addr = plan.spec.bind_addr();
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(listener);
    }
    let mut signals = Signals::new()?;
    let console = Console::new(config.quiet);
    let counters = Arc::new(Counters::default());
    let status_line = console.start_status_line(counters.clone());
    let (stop, stopped) = watch::channel(false);
    let mut forwards = JoinSet::new();
    for (plan, listener) in plans.into_iter().zip(listeners) {
        let sessions = usize::from(plan.sessions);
        // One session takes connections from the listener itself; several share them through
        // a dispatcher.
        let ends = if sessions == 1 {
            vec![(Source::Listener(listener), LaneState::new())]
        } else {
            let (lanes, ends) = Lanes::new(sessions, listener.local_addr()?);
            let stopped = stopped.clone();
            forwards.spawn(async move {
                lanes::dispatch(listener, lanes, stopped).await;
                Ok(())
            });
            ends
        };
        let tunnels = Tunnel::for_lanes(
            &plan.aws,
            config,
            &plan.target,
            &plan.session,
            &plan.spec,
            plan.name.as_deref(),
            ends,
        );
        for tunnel in tunnels {
            forwards.spawn(tunnel::run(
                tunnel,
                console,
                counters.clone(),
                stopped.clone(),
            ));
        }
    }

    let mut failed = false;
    let mut interrupted = false;
    // Sessions behind one listener fail alike (a wrong target, missing permissions): say it once.
    let mut said = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = signals.recv() => {
                if interrupted {
                    drop(status_line);
                    return Ok(EXIT_INTERRUPTED);
                }
                interrupted = true;
                let _ = stop.send(true);
            }
            done = forwards.join_next() => match done {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    let line = format!("rssm: {}", crate::one_line(&e));
                    if said.insert(line.clone()) {
                        console.line(&line);
                    }
                    failed = true;
                    // One forward down ends the command: close the others cleanly.
                    let _ = stop.send(true);
                }
                Some(Err(e)) => {
                    console.line(&format!("rssm: a forward stopped unexpectedly: {e}"));
                    failed = true;
                    let _ = stop.send(true);
                }
            }
        }
    }
    drop(status_line);
    Ok(if failed { EXIT_ERROR } else { 0 })
}

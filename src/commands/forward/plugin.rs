//! Port forwarding for the drop-in `session-manager-plugin` (AWS-StartPortForwardingSession*
//! started by the AWS CLI, PROTOCOL.md §9.4): the same forwarding as `rssm forward`, speaking
//! the official plugin's stdout lines, which scripts wait for (`Port N opened for sessionId …`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rssm_protocol::SessionTypeInfo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::link::Stop;
use super::source::Source;
use super::status::Console;
use super::tunnel::{self, ForwardMode};
use super::voice::{self, print_stdout, Ctx, Voice};
use super::EXIT_INTERRUPTED;
use crate::commands::signals::Signals;
use crate::commands::Connected;
use crate::driver::End;

/// Listens on 127.0.0.1:`local_port` (0 picks a free port) and forwards over `conn` until
/// Ctrl-C (exit 0), the service closes the session (exit 0, as the plugin does), or it fails.
pub async fn run_plugin(
    mut conn: Connected,
    info: SessionTypeInfo,
    local_port: u16,
    quiet: bool,
) -> Result<u8> {
    let id = conn.started.session_id.clone();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, local_port));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tunnel::finish(&mut conn).await;
            conn.terminate().await;
            return Err(e).with_context(|| format!("cannot listen on {addr}"));
        }
    };
    let port = listener.local_addr()?.port();
    let mut source = Source::Listener(listener);
    let mut signals = Signals::new()?;
    let (stop, mut stopped) = watch::channel(false);
    let ctx = Ctx::new(
        Console::without_status_line(quiet),
        Arc::default(),
        voice::remote_of(&info),
        Voice::Plugin {
            session_id: id.clone(),
        },
    );
    let announce = |mode: &ForwardMode| match mode {
        ForwardMode::Mux { .. } => print_stdout(&format!(
            "Port {port} opened for sessionId {id}.\nWaiting for connections...\n"
        )),
        ForwardMode::Basic { .. } => {
            print_stdout(&format!("Port {port} opened for sessionId {id}.\n"))
        }
    };
    let outcome = {
        let serve = tunnel::forward_connected(&mut conn, &mut source, &ctx, &mut stopped, announce);
        tokio::pin!(serve);
        loop {
            tokio::select! {
                outcome = &mut serve => break outcome,
                _ = signals.recv() => {
                    if *stop.borrow() {
                        return Ok(EXIT_INTERRUPTED);
                    }
                    print_stdout("Terminate signal received, exiting.\n");
                    let _ = stop.send(true);
                }
            }
        }
    };
    if matches!(outcome, Stop::Shutdown | Stop::Failed(_)) {
        tunnel::finish(&mut conn).await;
    }
    conn.terminate().await;
    match outcome {
        Stop::Shutdown | Stop::Ended(End::Finished) => {
            print_stdout(&format!("\n\nExiting session with sessionId: {id}.\n\n"));
            Ok(0)
        }
        Stop::Ended(End::Closed { reason }) if reason.is_empty() => {
            print_stdout(&format!("\n\nExiting session with sessionId: {id}.\n\n"));
            Ok(0)
        }
        Stop::Ended(End::Closed { reason }) => {
            print_stdout(&format!("\n\nSessionId: {id} : {reason}\n\n"));
            Ok(0)
        }
        Stop::Ended(End::Failed(reason)) => bail!("session {id} failed: {reason}"),
        Stop::Failed(why) => bail!("session {id}: {why}"),
    }
}

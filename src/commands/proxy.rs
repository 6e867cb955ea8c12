//! `rssm proxy HOST PORT`: the SSH ProxyCommand. stdin and stdout carry only tunnel bytes
//! (AWS-StartSSHSession, a Port session without `type`: StandardStreamForwarding, PROTOCOL.md
//! §9.4.1); every message of ours goes to stderr.

use std::collections::HashMap;

use anyhow::Result;
use bytes::BytesMut;
use rssm_protocol::MAX_STREAM_PAYLOAD;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::aws::Aws;
use crate::cli::ProxyArgs;
use crate::driver::{DriverConfig, End, Input, Output};

use super::{connect, Connected, EXIT_ERROR};

/// The document ssh users use (`--parameters portNumber=%p`).
pub const DOCUMENT: &str = "AWS-StartSSHSession";

/// Starts the SSH session and carries stdin/stdout until either side ends; returns the exit status.
pub async fn run(aws: &Aws, args: &ProxyArgs, config: DriverConfig) -> Result<u8> {
    let params = HashMap::from([("portNumber".to_owned(), vec![args.port.to_string()])]);
    let conn = connect(
        aws,
        config,
        &args.host,
        Some(DOCUMENT),
        params,
        &args.session,
    )
    .await?;
    run_connected(conn).await
}

/// Carries stdin/stdout on a session that is already open (also the drop-in plugin's mode for
/// Port sessions without a `type`, e.g. AWS-StartSSHSession).
pub async fn run_connected(mut conn: Connected) -> Result<u8> {
    let mut stdout = tokio::io::stdout();
    let mut stdin = tokio::io::stdin();
    let mut buf = BytesMut::with_capacity(MAX_STREAM_PAYLOAD);
    // The agent discards data sent before the handshake completes (§7.6): read stdin only after.
    let mut handshake_done = false;
    let mut stdin_open = true;
    let end = loop {
        tokio::select! {
            out = conn.handle.output.recv() => match out {
                Some(Output::Data(b)) => {
                    stdout.write_all(&b).await?;
                    stdout.flush().await?;
                }
                Some(Output::HandshakeComplete { customer_message }) => {
                    if !customer_message.is_empty() {
                        eprintln!("{customer_message}");
                    }
                    handshake_done = true;
                }
                Some(Output::Ended(end)) => break end,
                Some(_) => {}
                None => break End::Failed("the session driver stopped".into()),
            },
            n = stdin.read_buf(&mut buf), if handshake_done && stdin_open => {
                match n {
                    Ok(0) | Err(_) => {
                        // ssh closed its end: deliver what is queued, then stop.
                        stdin_open = false;
                        let _ = conn.handle.input.send(Input::Finish).await;
                    }
                    Ok(_) => {
                        let data = buf.split().freeze();
                        for chunk in data.chunks(MAX_STREAM_PAYLOAD) {
                            if conn.handle.input.send(Input::Data(data.slice_ref(chunk))).await.is_err() {
                                break;
                            }
                        }
                        buf.reserve(MAX_STREAM_PAYLOAD);
                    }
                }
            }
        }
    };
    conn.terminate().await;
    Ok(match end {
        End::Closed { .. } | End::Finished => 0,
        End::Failed(reason) => {
            eprintln!("rssm: {reason}");
            EXIT_ERROR
        }
    })
}

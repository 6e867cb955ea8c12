//! Basic forwarding for agents that cannot multiplex (≤ 3.0.196.0, PROTOCOL.md §9.4.2): the
//! session carries one TCP connection at a time. When the local connection ends we send Flag
//! DisconnectToPort (the agent closes its side and re-dials on the next data) and accept the next.
//! While no connection exists the session is "not ready", so agent data waits unacknowledged.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use rssm_protocol::payload::Flag;
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};

use super::conn::{Conn, ConnEvent, ConnId};
use super::link::{Link, Reports, Stop};
use super::source::Source;
use super::voice::Ctx;
use rssm_protocol::MAX_STREAM_PAYLOAD;

use crate::driver::{End, Input, Output};

/// Serves the connections of `source` one at a time until the user stops or the session ends,
/// starting with the connections `waiting` since before the session was ready. The connection
/// open at the end is closed cleanly (FIN).
pub async fn serve<R: Reports>(
    source: &mut Source,
    waiting: Vec<TcpStream>,
    link: Link<'_, R>,
    ctx: &Ctx,
) -> Stop {
    let mut current = None;
    let stop = serve_each(source, waiting.into(), link, ctx, &mut current).await;
    if let Some((_, conn)) = current {
        conn.close();
        ctx.closed();
    }
    stop
}

async fn serve_each<R: Reports>(
    source: &mut Source,
    mut waiting: VecDeque<TcpStream>,
    link: Link<'_, R>,
    ctx: &Ctx,
    current: &mut Option<(ConnId, Conn)>,
) -> Stop {
    let Link {
        input,
        output,
        shutdown,
        ..
    } = link;
    let (events_tx, mut events) = mpsc::channel(4);
    let room = Arc::new(Notify::new());
    let mut next_id: ConnId = 0;
    // Requests for the driver, in order; refilled only when empty, so bounded by one event.
    let mut pending: VecDeque<Input> = VecDeque::new();
    // Agent bytes waiting for room in the connection's queue.
    let mut held: Option<Bytes> = None;
    loop {
        if let Some(bytes) = held.take() {
            let to_local = current.as_ref().and_then(|(_, c)| c.to_local.as_ref());
            match to_local.map(|tx| tx.try_send(bytes)) {
                Some(Err(TrySendError::Full(bytes))) => held = Some(bytes),
                Some(Ok(())) => {}
                // No connection (or its socket broke, which its reader reports): drop.
                Some(Err(TrySendError::Closed(_))) | None => {
                    tracing::debug!("agent data without a local connection dropped");
                }
            }
        }
        let is_current = |id: ConnId| current.as_ref().is_some_and(|(cur, _)| *cur == id);
        tokio::select! {
            _ = shutdown.changed() => return Stop::Shutdown,
            out = output.recv(), if held.is_none() => match out {
                Some(Output::Data(bytes)) => held = Some(bytes),
                Some(Output::Ended(end)) => return Stop::Ended(end),
                Some(other) => tracing::debug!("ignored during forwarding: {other:?}"),
                None => return Stop::Ended(End::Failed("the session driver stopped".into())),
            },
            _ = room.notified(), if held.is_some() => {}
            permit = input.reserve(), if !pending.is_empty() => {
                let Ok(permit) = permit else {
                    return Stop::Ended(End::Failed("the session driver stopped".into()));
                };
                if let Some(next) = pending.pop_front() {
                    permit.send(next);
                }
                while !pending.is_empty() {
                    let Ok(permit) = input.try_reserve() else { break };
                    if let Some(next) = pending.pop_front() {
                        permit.send(next);
                    }
                }
            },
            Some(event) = events.recv(), if pending.is_empty() => match event {
                ConnEvent::Data(id, bytes) if is_current(id) => {
                    for chunk in bytes.chunks(MAX_STREAM_PAYLOAD) {
                        pending.push_back(Input::Data(bytes.slice_ref(chunk)));
                    }
                }
                ConnEvent::Eof(id) | ConnEvent::Reset(id) | ConnEvent::Closed(id) if is_current(id) => {
                    // The plugin treats any end of the local read as a disconnect (§9.4.2).
                    if let Some((_, conn)) = current.take() {
                        conn.abort();
                        ctx.closed();
                    }
                    held = None;
                    pending.push_back(Input::Flag(Flag::DisconnectToPort));
                    pending.push_back(Input::Ready(false));
                }
                _ => {} // from a connection already closed
            },
            accepted = next_connection(source, &mut waiting), if current.is_none() => match accepted {
                Ok(socket) => {
                    next_id = next_id.wrapping_add(1);
                    ctx.opened();
                    ctx.on_accept(true);
                    let conn = Conn::spawn(next_id, socket, events_tx.clone(), room.clone(), ctx.counters.clone());
                    *current = Some((next_id, conn));
                    pending.push_back(Input::Ready(true));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// The oldest waiting connection, else the next one from `source`.
async fn next_connection(
    source: &mut Source,
    waiting: &mut VecDeque<TcpStream>,
) -> std::io::Result<TcpStream> {
    if let Some(socket) = waiting.pop_front() {
        return Ok(socket);
    }
    source.accept().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::watch;

    use super::*;

    async fn next(rx: &mut mpsc::Receiver<Input>) -> Input {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("input in time")
            .expect("input open")
    }

    #[tokio::test]
    async fn serves_one_connection_at_a_time_and_reports_disconnects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (input, mut to_agent) = mpsc::channel(64);
        let (from_agent, mut output) = mpsc::channel(64);
        let (stop, mut shutdown) = watch::channel(false);
        let server = tokio::spawn(async move {
            let ctx = Ctx::for_tests();
            let link = Link {
                input: &input,
                output: &mut output,
                shutdown: &mut shutdown,
                hurry: None,
                demand: None,
            };
            serve(&mut Source::Listener(listener), Vec::new(), link, &ctx).await
        });

        let mut first = TcpStream::connect(addr).await.unwrap();
        assert!(matches!(next(&mut to_agent).await, Input::Ready(true)));
        first.write_all(b"hello").await.unwrap();
        assert!(matches!(next(&mut to_agent).await, Input::Data(b) if b == "hello"));
        from_agent
            .send(Output::Data(Bytes::from_static(b"world")))
            .await
            .unwrap();
        let mut got = [0u8; 5];
        first.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"world");

        // A second connection waits until the first one is gone.
        let mut second = TcpStream::connect(addr).await.unwrap();
        drop(first);
        assert!(matches!(
            next(&mut to_agent).await,
            Input::Flag(Flag::DisconnectToPort)
        ));
        assert!(matches!(next(&mut to_agent).await, Input::Ready(false)));
        assert!(matches!(next(&mut to_agent).await, Input::Ready(true)));
        second.write_all(&[7u8; 3000]).await.unwrap();
        let mut sent = 0;
        while sent < 3000 {
            match next(&mut to_agent).await {
                Input::Data(b) => {
                    assert!(b.len() <= MAX_STREAM_PAYLOAD);
                    sent += b.len();
                }
                other => panic!("unexpected {other:?}"),
            }
        }

        stop.send(true).unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(stopped, Stop::Shutdown));
    }
}

//! One accepted local TCP connection: a task that copies the socket's bytes to the forward's loop
//! and the loop's bytes to the socket, both directions at once (a client that writes before it
//! reads must not deadlock us), with bounded queues so a slow side pushes back.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::status::Counters;

/// Largest read from a local socket: one smux frame's worth (§9.4.3 MaxFrameSize).
pub const READ_SIZE: usize = 32 * 1024;
/// Chunks queued towards one local socket (each at most one smux frame, ≤ 32 KiB).
const TO_LOCAL_CHUNKS: usize = 8;

/// Which connection an event is about: the smux stream id in mux mode, a counter in basic mode.
pub type ConnId = u32;

/// What a connection task tells the forward's loop.
#[derive(Debug)]
pub enum ConnEvent {
    /// Bytes read from the local socket.
    Data(ConnId, Bytes),
    /// The local side will send no more (read EOF).
    Eof(ConnId),
    /// Reading the local socket failed (reset): the connection is dead.
    Reset(ConnId),
    /// Both directions are done; the task is ending.
    Closed(ConnId),
}

/// The loop's handle on a connection task.
#[derive(Debug)]
pub struct Conn {
    /// Bytes for the local socket. Dropping it half-closes the socket (after the queued bytes).
    pub to_local: Option<mpsc::Sender<Bytes>>,
    task: JoinHandle<()>,
}

impl Conn {
    /// Starts copying `stream`. Events go to `events` (shared by all connections, so its bound
    /// limits the bytes in flight from all sockets together); `room` is notified whenever bytes
    /// were written to the socket, i.e. `to_local` may have room again.
    pub fn spawn(
        id: ConnId,
        stream: TcpStream,
        events: mpsc::Sender<ConnEvent>,
        room: Arc<Notify>,
        counters: Arc<Counters>,
    ) -> Conn {
        let _ = stream.set_nodelay(true);
        let (to_local, from_loop) = mpsc::channel(TO_LOCAL_CHUNKS);
        let task = tokio::spawn(async move {
            let (rd, wr) = stream.into_split();
            tokio::join!(
                upload(id, rd, &events, &counters),
                download(wr, from_loop, &room, &counters)
            );
            let _ = events.send(ConnEvent::Closed(id)).await;
        });
        Conn {
            to_local: Some(to_local),
            task,
        }
    }

    /// Closes the socket now, both ways, without further events.
    pub fn abort(self) {
        drop(self);
    }
}

/// A connection never outlives its loop: dropping the handle closes the socket.
impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upload(
    id: ConnId,
    mut rd: OwnedReadHalf,
    events: &mpsc::Sender<ConnEvent>,
    counters: &Counters,
) {
    loop {
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        let event = match rd.read_buf(&mut buf).await {
            Ok(0) => ConnEvent::Eof(id),
            Ok(n) => {
                Counters::add(&counters.up, n as u64);
                ConnEvent::Data(id, buf.freeze())
            }
            Err(e) => {
                tracing::debug!(conn = id, "local read failed: {e}");
                ConnEvent::Reset(id)
            }
        };
        let last = !matches!(event, ConnEvent::Data(..));
        if events.send(event).await.is_err() || last {
            return;
        }
    }
}

async fn download(
    mut wr: OwnedWriteHalf,
    mut from_loop: mpsc::Receiver<Bytes>,
    room: &Notify,
    counters: &Counters,
) {
    while let Some(chunk) = from_loop.recv().await {
        if let Err(e) = wr.write_all(&chunk).await {
            // Dropping `from_loop` tells the loop this direction is gone.
            tracing::debug!("local write failed: {e}");
            return;
        }
        Counters::add(&counters.down, chunk.len() as u64);
        room.notify_one();
    }
    let _ = wr.shutdown().await;
}

//! One accepted local TCP connection: a task that copies the socket's bytes to the forward's loop
//! and the loop's bytes to the socket, both directions at once (a client that writes before it
//! reads must not deadlock us), with bounded queues so a slow side pushes back.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinHandle;

use super::status::Counters;

/// Largest read from a local socket: one smux frame's worth (§9.4.3 MaxFrameSize).
pub const READ_SIZE: usize = 32 * 1024;
/// Largest chunk queued towards a local socket. The agent sends smux frames of up to 32 KiB;
/// they are split (without copying) so that the queue below holds at most 64 KiB.
pub const TO_LOCAL_CHUNK: usize = 16 * 1024;
/// What a chunk read from a local socket costs in credit: what it keeps allocated. A read of
/// half the buffer or more is passed on without copying and keeps the whole buffer alive until
/// its last byte is written on; a smaller one is copied into an allocation of its own. So the
/// credit bounds memory, not just bytes (fifty connections reading 20 KiB at a time would
/// otherwise pin 1.6 MiB where the credit counts 0.5).
pub fn credit_cost(len: usize) -> usize {
    if len < COPY_BELOW {
        len
    } else {
        READ_SIZE
    }
}

/// Reads shorter than this are copied out of the read buffer (see [`credit_cost`]).
const COPY_BELOW: usize = READ_SIZE / 2;

/// Chunks queued towards one local socket: what fifty connections with slow readers hold on top
/// of the smux receive buffer (at most 3.2 MiB).
const TO_LOCAL_CHUNKS: usize = 4;
/// How long a connection closed with [`Conn::close`] may take to deliver what is queued and to
/// see its client close too, before the socket is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What the bytes read from local sockets may occupy before they are passed on: so much per
/// connection, and so much for all of them together. Reads wait for both, so with many busy
/// connections each holds a share of the pool rather than a whole allowance.
#[derive(Debug)]
pub struct Credit {
    own: Semaphore,
    pool: Arc<Semaphore>,
}

impl Credit {
    /// `own` bytes for this connection, drawn from `pool` shared with others.
    pub fn new(own: usize, pool: Arc<Semaphore>) -> Credit {
        Credit {
            own: Semaphore::new(own),
            pool,
        }
    }

    /// Waits for `n` bytes of credit; false once the credit is closed.
    async fn take(&self, n: usize) -> bool {
        let n = n as u32;
        match self.own.acquire_many(n).await {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        match self.pool.acquire_many(n).await {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        true
    }

    /// Gives `n` bytes of credit back.
    pub fn give(&self, n: usize) {
        if n > 0 {
            self.own.add_permits(n);
            self.pool.add_permits(n);
        }
    }
}

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
    /// `None` once [`Conn::close`] let the task finish on its own.
    task: Option<JoinHandle<()>>,
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
        Conn::spawn_credited(id, stream, events, room, counters, None)
    }

    /// Like [`Conn::spawn`], and each read is paid for with `credit` (see [`Credit`]): the
    /// loop gives it back once it has passed the bytes on.
    /// That bounds what one connection can have queued, so the loop can take every
    /// connection's events at once and still choose fairly which bytes go out next.
    pub fn spawn_credited(
        id: ConnId,
        stream: TcpStream,
        events: mpsc::Sender<ConnEvent>,
        room: Arc<Notify>,
        counters: Arc<Counters>,
        credit: Option<Arc<Credit>>,
    ) -> Conn {
        let _ = stream.set_nodelay(true);
        let (to_local, from_loop) = mpsc::channel(TO_LOCAL_CHUNKS);
        let task = tokio::spawn(async move {
            let (rd, wr) = stream.into_split();
            tokio::join!(
                upload(id, rd, &events, &counters, credit.as_deref()),
                download(wr, from_loop, &room, &counters)
            );
            let _ = events.send(ConnEvent::Closed(id)).await;
        });
        Conn {
            to_local: Some(to_local),
            task: Some(task),
        }
    }

    /// Closes the socket now, both ways, without further events. Unread bytes from the client
    /// make the kernel reset the connection: for connections that must fail visibly.
    pub fn abort(self) {
        drop(self);
    }

    /// Closes the connection the way a server would: what is queued for the client is written,
    /// then FIN; what the client still sends is read and discarded until it closes too (so the
    /// kernel has no reason to answer with a reset), for at most [`CLOSE_GRACE`]. For when the
    /// session under the connection is gone.
    pub fn close(mut self) {
        self.to_local = None;
        let Some(task) = self.task.take() else { return };
        let abort = task.abort_handle();
        tokio::spawn(async move {
            if tokio::time::timeout(CLOSE_GRACE, task).await.is_err() {
                abort.abort();
            }
        });
    }
}

/// A connection never outlives its loop: dropping the handle closes the socket.
impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn upload(
    id: ConnId,
    mut rd: OwnedReadHalf,
    events: &mpsc::Sender<ConnEvent>,
    counters: &Counters,
    credit: Option<&Credit>,
) {
    // Allocated only once the socket is readable, so an idle connection holds no buffer; a
    // small read is copied out (see `credit_cost`), so that a typing user does not pin 32 KiB
    // per keystroke.
    let mut buf = BytesMut::new();
    loop {
        if let Err(e) = rd.readable().await {
            tracing::debug!(conn = id, "local read failed: {e}");
            let _ = events.send(ConnEvent::Reset(id)).await;
            return;
        }
        // Credit before the read, so what is read is already paid for: the socket, not our
        // memory, holds whatever the loop has no room for.
        if let Some(credit) = credit {
            if !credit.take(READ_SIZE).await {
                return; // closed: the loop is gone
            }
        }
        if buf.capacity() < READ_SIZE {
            buf = BytesMut::with_capacity(READ_SIZE);
        }
        let read = rd.try_read_buf(&mut buf);
        let got = *read.as_ref().unwrap_or(&0);
        if let Some(credit) = credit {
            credit.give(READ_SIZE - credit_cost(got));
        }
        let event = match read {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Readiness was stale (the last read drained the socket): wait without the
                // buffer, or every connection that goes quiet keeps 32 KiB.
                buf = BytesMut::new();
                continue;
            }
            Ok(0) => ConnEvent::Eof(id),
            Ok(n) => {
                Counters::add(&counters.up, n as u64);
                let data = if n < COPY_BELOW {
                    let small = bytes::Bytes::copy_from_slice(&buf);
                    // Not kept for the next read: a connection that goes quiet (most of them,
                    // most of the time) then holds no buffer.
                    buf = BytesMut::new();
                    small
                } else {
                    buf.split().freeze()
                };
                ConnEvent::Data(id, data)
            }
            Err(e) => {
                tracing::debug!(conn = id, "local read failed: {e}");
                ConnEvent::Reset(id)
            }
        };
        let last = !matches!(event, ConnEvent::Data(..));
        if events.send(event).await.is_err() {
            // The loop is gone and the connection is closing (`Conn::close`): drain until the
            // client closes its side, so that closing ours is a FIN, not a reset.
            if !last {
                discard_until_eof(&mut rd).await;
            }
            return;
        }
        if last {
            return;
        }
    }
}

async fn discard_until_eof(rd: &mut OwnedReadHalf) {
    let mut sink = vec![0u8; READ_SIZE];
    while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
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

//! One accepted local TCP connection: a task that copies the socket's bytes to the forward's loop
//! and the loop's bytes to the socket, both directions at once (a client that writes before it
//! reads must not deadlock us), with bounded queues so a slow side pushes back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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

thread_local! {
    /// Where connection tasks read their sockets: one buffer for all of them (a task holds it
    /// only inside a non-blocking read, never across an await).
    static READ_BUFFER: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

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
    // Each read is copied out of the shared buffer into an allocation of exactly its size: a
    // connection holds no buffer of its own, idle or not, and what waits in the queues costs
    // what the credit counts. (Passing the read buffer on instead would save that memcpy but
    // pin 32 KiB per read, however few bytes it held, which adds up across many connections.)
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
        let read = READ_BUFFER
            .with_borrow_mut(|buf| rd.try_read(buf).map(|n| Bytes::copy_from_slice(&buf[..n])));
        let got = read.as_ref().map_or(0, |b| b.len());
        if let Some(credit) = credit {
            credit.give(READ_SIZE - got);
        }
        let event = match read {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok(data) if data.is_empty() => ConnEvent::Eof(id),
            Ok(data) => {
                Counters::add(&counters.up, data.len() as u64);
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

//! Where a forward's local connections come from: its own listener, or a queue that a
//! dispatcher fills ([`super::lanes`]: several sessions behind one listener, or `rssm socks`
//! handing over connections it has negotiated).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A forward's supply of local connections.
#[derive(Debug)]
pub enum Source {
    /// Accepts on a bound listener.
    Listener(TcpListener),
    /// Takes connections another task accepted.
    Queue {
        /// Connections, in the order they were handed over.
        rx: mpsc::Receiver<TcpStream>,
        /// The listener's address, for messages and the `localPortNumber` parameter.
        local: SocketAddr,
    },
}

impl Source {
    /// The local address connections arrive on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Source::Listener(l) => l.local_addr(),
            Source::Queue { local, .. } => Ok(*local),
        }
    }

    /// The next connection. A queue whose dispatcher is gone never yields again: the command
    /// is stopping, and its shutdown signal ends the caller.
    pub async fn accept(&mut self) -> io::Result<TcpStream> {
        match self {
            Source::Listener(l) => {
                let (socket, peer) = l.accept().await?;
                tracing::debug!(%peer, "connection accepted");
                Ok(socket)
            }
            Source::Queue { rx, .. } => match rx.recv().await {
                Some(socket) => Ok(socket),
                None => std::future::pending().await,
            },
        }
    }
}

//! Loopback TCP: servers to forward to, free ports, connecting once something listens.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::wait;

/// A TCP server on 127.0.0.1 that writes `banner` to each connection, then echoes it until the
/// client half-closes (and half-closes in turn). Returns its port.
pub fn echo_server(banner: &'static [u8]) -> u16 {
    serve_echo(listen(), banner)
}

/// [`echo_server`] on a listener of the caller's (a port chosen beforehand).
pub fn serve_echo(listener: TcpListener, banner: &'static [u8]) -> u16 {
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let Ok(mut reader) = conn.try_clone() else {
                    return;
                };
                if conn.write_all(banner).is_ok() && std::io::copy(&mut reader, &mut conn).is_ok() {
                    let _ = conn.shutdown(Shutdown::Write);
                }
            });
        }
    });
    port
}

/// A TCP server on 127.0.0.1 that sends `block` `times` times to each connection as fast as the
/// connection takes it, then closes it.
pub struct Source {
    pub port: u16,
    written: Arc<AtomicUsize>,
}

impl Source {
    pub fn start(block: Vec<u8>, times: usize) -> Source {
        let listener = listen();
        let port = listener.local_addr().expect("addr").port();
        let written = Arc::new(AtomicUsize::new(0));
        let block = Arc::new(block);
        let counter = written.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let (block, counter) = (block.clone(), counter.clone());
                thread::spawn(move || {
                    for _ in 0..times {
                        if conn.write_all(&block).is_err() {
                            return;
                        }
                        counter.fetch_add(block.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        Source { port, written }
    }

    /// Bytes the kernel has taken from the server so far, all connections together.
    pub fn written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits up to `limit` until the server is held back: nothing more written for `quiet`
    /// (its sends block because nobody drains the path). Panics if it is not, or if it wrote
    /// `total` bytes, everything, meanwhile. Returns the bytes written.
    pub fn wait_blocked(&self, quiet: Duration, total: usize, limit: Duration) -> usize {
        let mut last = (self.written(), Instant::now());
        wait::until("the source server held back", limit, || {
            let now = self.written();
            assert!(
                now < total,
                "all {total} bytes went out: nothing held the server back"
            );
            if now != last.0 {
                last = (now, Instant::now());
                None
            } else {
                (last.1.elapsed() >= quiet).then_some(now)
            }
        })
    }
}

/// A port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    listen().local_addr().expect("free port").port()
}

fn listen() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind on 127.0.0.1")
}

/// Connects to `addr` within `limit`; reads and writes on the stream fail after `limit` too.
pub fn connect(addr: SocketAddr, limit: Duration) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, limit)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(limit)).expect("timeout");
    s.set_write_timeout(Some(limit)).expect("timeout");
    s
}

/// Connects to `addr` once something listens there (a server starting up), within `limit`.
pub fn connect_when_listening(addr: SocketAddr, limit: Duration) -> TcpStream {
    wait::until(&format!("listener on {addr}"), limit, || {
        TcpStream::connect(addr).ok()
    })
}

/// Sends `data` through a new connection to `addr` (then half-closes) while reading everything
/// that comes back, within `limit` per read or write.
pub fn round_trip(addr: SocketAddr, data: &[u8], limit: Duration) -> Vec<u8> {
    let stream = connect(addr, limit);
    let mut writer = stream.try_clone().expect("clone");
    thread::scope(|scope| {
        scope.spawn(move || {
            writer.write_all(data).expect("write");
            writer.shutdown(Shutdown::Write).expect("half-close");
        });
        let mut got = Vec::new();
        (&stream).read_to_end(&mut got).expect("read");
        got
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;

    const LIMIT: Duration = Duration::from_secs(30);

    fn local(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    #[test]
    fn the_echo_server_greets_then_echoes() {
        let port = echo_server(b"hi ");
        let data = pattern(1, 300_000);
        let got = round_trip(local(port), &data, LIMIT);
        assert_eq!(&got[..3], b"hi ");
        assert!(got[3..] == data[..]);
    }

    #[test]
    fn a_source_nobody_reads_is_held_back() {
        let source = Source::start(vec![7; 1 << 20], 64);
        let conn = connect_when_listening(local(source.port), LIMIT);
        let held = source.wait_blocked(Duration::from_millis(300), 64 << 20, LIMIT);
        assert!(held < 64 << 20);
        drop(conn);
    }
}

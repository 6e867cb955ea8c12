//! `rssm socks [BIND:]PORT --via TARGET`: a local SOCKS5 proxy (RFC 1928: CONNECT, IPv4, IPv6
//! and domain names; no authentication, or RFC 1929 username/password with `--user`) whose
//! connections leave from TARGET — `ssh -D` for instances without inbound SSH. Bounded: at most
//! `--max-sessions` SSM sessions and `--max-connections` client connections at once; past
//! either, a client is refused with a line on stderr.
//!
//! Each destination gets a forward of its own (PROTOCOL.md §9.4: the remote-host port document,
//! or the plain one for `localhost`), started by its first connection, shared by later ones over
//! smux, striped over `--sessions N`, restarted like any forward when its session is lost, and
//! ended after [`IDLE_CLOSE`] without connections. The client hears "succeeded" once the
//! destination's session is up. Whether the agent then reaches the destination, smux does not
//! say (it has no open confirmation): a refused connection ends at once, with a line on stderr.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use socks5_proto::handshake::{self, Method};
use socks5_proto::{Address, Command as SocksCommand, Error as SocksError, ProtocolError};
use socks5_proto::{Reply, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::check_target;
use super::forward::lanes::Lanes;
use super::forward::spec::{self, ForwardSpec};
use super::forward::status::{Console, Counters};
use super::forward::tunnel::{self, Tunnel};
use super::forward::EXIT_INTERRUPTED;
use super::signals::Signals;
use crate::aws::Aws;
use crate::cli::SocksArgs;
use crate::driver::DriverConfig;

/// Longest a client may take to say where it wants to go.
const NEGOTIATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients negotiating at once; more wait in the listen backlog.
const MAX_NEGOTIATING: usize = 256;
/// How long a connection waits for its destination's session to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A destination without connections this long has its sessions ended (before the service's
/// idle timeout, 20 minutes by default, would).
const IDLE_CLOSE: Duration = Duration::from_secs(300);
/// How often idle destinations are looked for.
const REAP_EVERY: Duration = Duration::from_secs(10);
/// Where `--user`'s password comes from.
pub const PASSWORD_ENV: &str = "RSSM_SOCKS_PASSWORD";

/// RFC 1929 credentials a client must present.
pub struct Login {
    user: Vec<u8>,
    password: Vec<u8>,
}

impl Login {
    /// Credentials as given (each 1 to 255 bytes for a client to be able to present them).
    pub fn new(user: &[u8], password: &[u8]) -> Login {
        Login {
            user: user.to_vec(),
            password: password.to_vec(),
        }
    }

    fn from_args(args: &SocksArgs) -> Result<Option<Login>> {
        let Some(user) = &args.user else {
            return Ok(None);
        };
        let password = std::env::var(PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .with_context(|| format!("--user needs the password in {PASSWORD_ENV}"))?;
        if user.is_empty() || user.len() > 255 || password.len() > 255 {
            bail!("--user and {PASSWORD_ENV} must be 1 to 255 bytes (RFC 1929)");
        }
        Ok(Some(Login {
            user: user.clone().into_bytes(),
            password: password.into_bytes(),
        }))
    }

    /// Compares without stopping at the first difference.
    fn accepts(&self, user: &[u8], password: &[u8]) -> bool {
        fn same(a: &[u8], b: &[u8]) -> bool {
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        }
        same(&self.user, user) & same(&self.password, password)
    }
}

/// Client connections open or waiting, for `--max-connections`.
struct Load {
    counters: Arc<Counters>,
    waiting: AtomicU64,
    max: u64,
}

impl Load {
    fn full(&self) -> bool {
        self.counters.open.load(Ordering::Relaxed) + self.waiting.load(Ordering::Relaxed)
            >= self.max
    }
}

/// Counts a connection as waiting for its destination while it lives.
struct Waiting(Arc<Load>);

impl Waiting {
    fn new(load: Arc<Load>) -> Waiting {
        load.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(load)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves SOCKS5 until Ctrl-C (exit 0). A destination that cannot be reached fails its own
/// connections, not the proxy.
pub async fn run(aws: &Aws, args: &SocksArgs, config: DriverConfig) -> Result<u8> {
    let quiet = config.quiet;
    check_target(&args.via)?;
    let login = Login::from_args(args)?.map(Arc::new);
    let addr = spec::parse_listen(&args.listen)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let mut signals = Signals::new()?;
    let console = Console::new(quiet);
    let counters = Arc::new(Counters::default());
    let status_line = console.start_status_line(counters.clone());
    let line = format!(
        "SOCKS5 proxy on {local}; connections leave from {}",
        args.via
    );
    // With PORT 0 the user cannot do without the chosen port, even with --quiet.
    if addr.port() == 0 {
        console.line(&line);
    } else {
        console.info(&line);
    }

    let load = Arc::new(Load {
        counters: counters.clone(),
        waiting: AtomicU64::new(0),
        max: u64::from(args.max_connections),
    });
    let mut proxy = Proxy {
        load: load.clone(),
        aws: aws.clone(),
        config,
        args,
        local,
        console,
        counters,
        destinations: HashMap::new(),
        tunnels: JoinSet::new(),
        generation: 0,
    };
    let (asked_tx, mut asked) = mpsc::channel::<(ForwardSpec, TcpStream)>(64);
    let mut negotiating = JoinSet::new();
    let mut reap = tokio::time::interval(REAP_EVERY);
    let mut stopping = false;
    loop {
        if stopping && proxy.tunnels.is_empty() {
            break;
        }
        tokio::select! {
            _ = signals.recv() => {
                if stopping {
                    return Ok(EXIT_INTERRUPTED);
                }
                stopping = true;
                negotiating.abort_all();
                proxy.stop_all();
            }
            accepted = listener.accept(), if !stopping && negotiating.len() < MAX_NEGOTIATING => match accepted {
                Ok((socket, peer)) => {
                    tracing::debug!(%peer, "SOCKS client connected");
                    let asked_tx = asked_tx.clone();
                    let (login, load) = (login.clone(), load.clone());
                    negotiating.spawn(async move {
                        let mut socket = socket;
                        match tokio::time::timeout(NEGOTIATE_TIMEOUT, negotiate(&mut socket, local, login.as_deref())).await {
                            Ok(Ok(dest)) if load.full() => {
                                let _ = reply(&mut socket, Reply::GeneralFailure).await;
                                config.notice(&format!(
                                    "refused a connection to {}: {} client connections are open (--max-connections)",
                                    dest.remote(), load.max
                                ));
                            }
                            Ok(Ok(dest)) => { let _ = asked_tx.send((dest, socket)).await; }
                            Ok(Err(e)) => tracing::info!(%peer, "SOCKS negotiation failed: {e:#}"),
                            Err(_) => tracing::info!(%peer, "SOCKS client said nothing within {NEGOTIATE_TIMEOUT:?}"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some((dest, socket)) = asked.recv(), if !stopping => proxy.connect(dest, socket),
            Some(_) = negotiating.join_next(), if !negotiating.is_empty() => {}
            Some(ended) = proxy.tunnels.join_next(), if !proxy.tunnels.is_empty() => {
                if let Ok(ended) = ended {
                    proxy.on_tunnel_end(ended);
                }
            }
            _ = reap.tick() => proxy.reap(),
        }
    }
    drop(status_line);
    Ok(0)
}

/// The SOCKS5 greeting and request (RFC 1928 §3–5): where the client wants to go, as a forward
/// listening on `local`. Unsupported requests get their reply code before the error.
pub async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    local: SocketAddr,
    login: Option<&Login>,
) -> Result<ForwardSpec> {
    let hello = handshake::Request::read_from(socket).await?;
    let wanted = if login.is_some() {
        Method::PASSWORD
    } else {
        Method::NONE
    };
    if !hello.methods.contains(&wanted) {
        handshake::Response::new(Method::UNACCEPTABLE)
            .write_to(socket)
            .await?;
        match login {
            Some(_) => bail!("the client offers no username/password authentication"),
            None => bail!("the client offers no method without authentication"),
        }
    }
    handshake::Response::new(wanted).write_to(socket).await?;
    if let Some(login) = login {
        // RFC 1929: version 1, the user name and the password; status 0 lets the client on.
        let offered = handshake::password::Request::read_from(socket).await?;
        let ok = login.accepts(&offered.username, &offered.password);
        handshake::password::Response::new(ok)
            .write_to(socket)
            .await?;
        if !ok {
            bail!("wrong user name or password");
        }
    }
    let request = match Request::read_from(socket).await {
        Ok(r) => r,
        Err(SocksError::Protocol(e)) => {
            let code = match e {
                ProtocolError::InvalidCommand { .. } => Reply::CommandNotSupported,
                ProtocolError::InvalidAddressTypeInRequest { .. } => Reply::AddressTypeNotSupported,
                _ => Reply::GeneralFailure,
            };
            let _ = reply(socket, code).await;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    if request.command != SocksCommand::Connect {
        let _ = reply(socket, Reply::CommandNotSupported).await;
        bail!("{:?} is not supported, only CONNECT", request.command);
    }
    let (host, port) = match request.address {
        Address::SocketAddress(a) => (a.ip().to_string(), a.port()),
        Address::DomainAddress(name, port) => match String::from_utf8(name) {
            Ok(name) if is_host_name(&name) => (name.to_ascii_lowercase(), port),
            _ => {
                let _ = reply(socket, Reply::HostUnreachable).await;
                bail!("the destination is not a host name");
            }
        },
    };
    if port == 0 {
        let _ = reply(socket, Reply::HostUnreachable).await;
        bail!("destination port 0");
    }
    Ok(ForwardSpec {
        bind: local.ip(),
        local_port: local.port(),
        host,
        remote_port: port,
    })
}

/// Letters, digits, `-`, `.` and `_` (some internal names have it): what the agent can resolve.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The reply to a CONNECT request; the bound address is not ours to tell (it is on the target).
async fn reply<S: AsyncWrite + Unpin>(socket: &mut S, code: Reply) -> std::io::Result<()> {
    Response::new(code, Address::unspecified())
        .write_to(socket)
        .await
}

/// One destination's forward: its lanes, and how to stop them.
struct Destination {
    generation: u64,
    lanes: Arc<Lanes>,
    stop: watch::Sender<bool>,
    last_used: Instant,
    /// Its failure was reported (all its lanes fail alike).
    said: bool,
}

/// How a destination's forward ended: its key, generation and result.
type Ended = (String, u64, Result<()>);

struct Proxy<'a> {
    load: Arc<Load>,
    aws: Aws,
    config: DriverConfig,
    args: &'a SocksArgs,
    local: SocketAddr,
    console: Console,
    counters: Arc<Counters>,
    /// By `host:port`.
    destinations: HashMap<String, Destination>,
    tunnels: JoinSet<Ended>,
    generation: u64,
}

impl Proxy<'_> {
    /// Serves a negotiated client: its destination's forward (started now if there is none)
    /// takes the connection once a session is up; the client hears the outcome first.
    fn connect(&mut self, spec: ForwardSpec, mut socket: TcpStream) {
        let key = spec.remote().to_string();
        // Bounded by --max-connections: checked before a client gets here.
        let waiting = Waiting::new(self.load.clone());
        if !self.destinations.contains_key(&key) {
            let open = self.destinations.len() as u64 * u64::from(self.args.sessions);
            if open + u64::from(self.args.sessions) > u64::from(self.args.max_sessions) {
                self.config.notice(&format!(
                    "refused a connection to {key}: {open} sessions are open for other \
                     destinations (--max-sessions {})",
                    self.args.max_sessions
                ));
                tokio::spawn(async move {
                    let _ = reply(&mut socket, Reply::GeneralFailure).await;
                    drop(waiting);
                });
                return;
            }
            let dest = self.start(&key, spec);
            self.destinations.insert(key.clone(), dest);
        }
        let Some(dest) = self.destinations.get_mut(&key) else {
            return;
        };
        dest.last_used = Instant::now();
        let lanes = dest.lanes.clone();
        tokio::spawn(async move {
            let _waiting = waiting;
            let ready = tokio::time::timeout(READY_TIMEOUT, lanes.ready()).await;
            let outcome = match ready {
                Ok(Ok(())) => Reply::Succeeded,
                Ok(Err(_)) => Reply::GeneralFailure,
                Err(_) => Reply::TtlExpired,
            };
            if reply(&mut socket, outcome).await.is_ok() && outcome == Reply::Succeeded {
                let _ = lanes.hand(socket).await;
            }
            tracing::debug!(destination = %key, ?outcome, "SOCKS connect answered");
        });
    }

    /// Starts the forward (`--sessions` lanes) for a destination.
    fn start(&mut self, key: &str, spec: ForwardSpec) -> Destination {
        self.generation += 1;
        let generation = self.generation;
        let (lanes, ends) = Lanes::new(usize::from(self.args.sessions), self.local);
        let (stop, stopped) = watch::channel(false);
        let tunnels = Tunnel::for_lanes(
            &self.aws,
            self.config,
            &self.args.via,
            &self.args.session,
            &spec,
            None,
            ends,
        );
        for tunnel in tunnels {
            let run = tunnel::run(tunnel, self.console, self.counters.clone(), stopped.clone());
            let key = key.to_owned();
            self.tunnels
                .spawn(async move { (key, generation, run.await) });
        }
        Destination {
            generation,
            lanes: Arc::new(lanes),
            stop,
            last_used: Instant::now(),
            said: false,
        }
    }

    /// One lane of a destination ended: says why once, and forgets the destination when all
    /// its lanes have ended (the next client for it starts a new forward).
    fn on_tunnel_end(&mut self, (key, generation, result): Ended) {
        let Some(dest) = self
            .destinations
            .get_mut(&key)
            .filter(|d| d.generation == generation)
        else {
            return;
        };
        if let Err(e) = result {
            if !dest.said {
                dest.said = true;
                self.console
                    .line(&format!("rssm: {key}: {}", crate::one_line(&e)));
            }
        }
        if dest.lanes.ended() {
            self.destinations.remove(&key);
        }
    }

    /// Ends the forwards of destinations that have been idle for [`IDLE_CLOSE`].
    fn reap(&mut self) {
        let idle: Vec<String> = self
            .destinations
            .iter()
            .filter(|(_, d)| d.lanes.idle() && d.last_used.elapsed() >= IDLE_CLOSE)
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            if let Some(dest) = self.destinations.remove(&key) {
                tracing::info!(destination = %key, "closing an idle destination's sessions");
                let _ = dest.stop.send(true);
            }
        }
    }

    /// Ctrl-C: every forward closes its sessions cleanly.
    fn stop_all(&mut self) {
        for (_, dest) in self.destinations.drain() {
            let _ = dest.stop.send(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_client_bytes_are_negotiated_or_refused_in_one_line(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            with_login in proptest::prelude::any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let login = Login { user: b"u".to_vec(), password: b"p".to_vec() };
            let local: SocketAddr = "127.0.0.1:1080".parse().unwrap();
            let result = rt.block_on(async {
                use tokio::io::AsyncWriteExt;
                let (mut client, mut server) = tokio::io::duplex(64 * 1024);
                client.write_all(&bytes).await.unwrap();
                client.shutdown().await.unwrap();
                let login = with_login.then_some(&login);
                let out = negotiate(&mut server, local, login).await;
                drop(client);
                out
            });
            if let Err(e) = result {
                let line = format!("{e:#}");
                proptest::prop_assert!(!line.contains('\n'), "{line}");
            }
        }

        #[test]
        fn a_well_formed_connect_with_the_right_login_is_understood(port in 1u16.., user_ok in proptest::prelude::any::<bool>()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let login = Login { user: b"u".to_vec(), password: b"p".to_vec() };
            let local: SocketAddr = "127.0.0.1:1080".parse().unwrap();
            let mut bytes = vec![5, 1, 2, 1, 1, b'u', 1, if user_ok { b'p' } else { b'x' }];
            bytes.extend_from_slice(&[5, 1, 0, 3, 4]);
            bytes.extend_from_slice(b"host");
            bytes.extend_from_slice(&port.to_be_bytes());
            let result = rt.block_on(async {
                use tokio::io::AsyncWriteExt;
                let (mut client, mut server) = tokio::io::duplex(64 * 1024);
                client.write_all(&bytes).await.unwrap();
                let out = negotiate(&mut server, local, Some(&login)).await;
                drop(client);
                out
            });
            match result {
                Ok(spec) => {
                    proptest::prop_assert!(user_ok);
                    proptest::prop_assert_eq!((spec.host.as_str(), spec.remote_port), ("host", port));
                }
                Err(e) => {
                    proptest::prop_assert!(!user_ok);
                    let line = format!("{e:#}");
                    proptest::prop_assert!(line.contains("wrong user name or password"), "{line}");
                }
            }
        }
    }
}

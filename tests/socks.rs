//! `rssm socks` end to end: the real binary against an in-process simulator, SOCKS5 clients
//! (hand-written byte by byte, and curl) reaching real TCP and HTTP servers on loopback through
//! the simulated target.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::forward::*;
use common::{run_bounded, Sim, TempDir, DEMO};
use rssm_testkit::net::{echo_server, free_port, serve_echo};
use rssm_testkit::pattern;

/// `rssm socks 0 --via TARGET …`, with the proxy's address from its first line.
fn start_proxy(sim: &Sim, via: &str, extra: &[&str]) -> (Forward, SocketAddr) {
    let mut cmd = sim.rssm();
    cmd.args(["socks", "0", "--via", via]).args(extra);
    let mut proxy = Forward::spawn(cmd, Pipe::Stderr);
    let line = proxy.wait_line("SOCKS5 proxy on …", |l| l.starts_with("SOCKS5 proxy on "));
    let addr = line
        .trim_start_matches("SOCKS5 proxy on ")
        .split(';')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    (proxy, addr)
}

/// A SOCKS5 CONNECT to `dest` (ATYP 1, 3 or 4 as given); returns the reply code and, when it
/// succeeded, the connected stream.
fn socks_connect(proxy: SocketAddr, atyp_and_addr: &[u8], port: u16) -> (u8, TcpStream) {
    let mut s = connect(proxy);
    s.write_all(&[5, 1, 0]).expect("greeting");
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).expect("method choice");
    assert_eq!(choice, [5, 0], "no authentication chosen");
    let mut req = vec![5, 1, 0];
    req.extend_from_slice(atyp_and_addr);
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).expect("request");
    let reply = read_reply(&mut s);
    (reply, s)
}

/// Reads a SOCKS5 reply (any address type); returns its code.
fn read_reply(s: &mut TcpStream) -> u8 {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).expect("reply head");
    assert_eq!(head[0], 5, "version");
    let addr_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).expect("name length");
            n[0] as usize
        }
        t => panic!("address type {t}"),
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest).expect("bound address");
    head[1]
}

fn ipv4(ip: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![1];
    v.extend_from_slice(&ip.octets());
    v
}

fn domain(name: &str) -> Vec<u8> {
    let mut v = vec![3, name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v
}

fn echo_through(mut s: TcpStream, data: &[u8]) -> Vec<u8> {
    let mut reader = s.try_clone().expect("clone");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            s.write_all(data).expect("write");
            s.shutdown(Shutdown::Write).expect("half-close");
        });
        let mut got = Vec::new();
        reader.read_to_end(&mut got).expect("read");
        got
    })
}

/// Documents of the simulator's sessions with their `host` parameter, sorted.
fn sessions(sim: &Sim) -> Vec<(String, Option<String>)> {
    let mut v: Vec<_> = sim
        .sim
        .state()
        .sessions()
        .values()
        .map(|r| {
            let host = r
                .plan
                .properties
                .get("host")
                .and_then(|h| h.as_str())
                .map(str::to_owned);
            (r.plan.document_name.clone(), host)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn each_destination_gets_one_session_that_its_connections_share() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let (mut proxy, addr) = start_proxy(&sim, DEMO, &[]);

    for i in 0..3u64 {
        let (code, s) = socks_connect(addr, &ipv4(Ipv4Addr::LOCALHOST), echo);
        assert_eq!(code, 0, "CONNECT 127.0.0.1 #{i}");
        let data = pattern(i, 50_000);
        assert!(echo_through(s, &data) == data);
    }
    let (code, s) = socks_connect(addr, &domain("LocalHost"), echo);
    assert_eq!(code, 0, "CONNECT localhost");
    assert_eq!(echo_through(s, b"by name"), b"by name");

    assert_eq!(
        sessions(&sim),
        [
            ("AWS-StartPortForwardingSession".to_owned(), None),
            (
                "AWS-StartPortForwardingSessionToRemoteHost".to_owned(),
                Some("127.0.0.1".to_owned())
            ),
        ],
        "one session per destination"
    );
    proxy.ctrl_c_ends_cleanly();
}

#[test]
fn ipv6_destinations_work() {
    let sim = Sim::start();
    let listener = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).expect("bind ::1");
    let echo = serve_echo(listener, b"six\n");
    let (_proxy, addr) = start_proxy(&sim, DEMO, &[]);
    let mut atyp = vec![4];
    atyp.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    let (code, s) = socks_connect(addr, &atyp, echo);
    assert_eq!(code, 0);
    assert_eq!(echo_through(s, b"ping"), b"six\nping");
    assert_eq!(sessions(&sim)[0].1.as_deref(), Some("::1"));
}

#[test]
fn unsupported_requests_get_their_reply_codes_and_the_proxy_goes_on() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let (mut proxy, addr) = start_proxy(&sim, DEMO, &[]);

    // Only username/password offered: "no acceptable methods".
    let mut s = connect(addr);
    s.write_all(&[5, 1, 2]).expect("greeting");
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).expect("answer");
    assert_eq!(choice, [5, 0xff]);

    // BIND and UDP ASSOCIATE: "command not supported".
    for command in [2u8, 3] {
        let mut s = connect(addr);
        s.write_all(&[5, 1, 0]).expect("greeting");
        s.read_exact(&mut choice).expect("answer");
        let mut req = vec![5, command, 0];
        req.extend_from_slice(&ipv4(Ipv4Addr::LOCALHOST));
        req.extend_from_slice(&echo.to_be_bytes());
        s.write_all(&req).expect("request");
        assert_eq!(read_reply(&mut s), 7, "command {command}");
    }

    // Garbage instead of SOCKS: the connection is closed, nothing else happens.
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");

    let (code, s) = socks_connect(addr, &ipv4(Ipv4Addr::LOCALHOST), echo);
    assert_eq!(code, 0);
    assert_eq!(echo_through(s, b"still here"), b"still here");
    assert!(sessions(&sim).len() == 1, "no session for refused requests");
    assert!(proxy.is_running());
}

#[test]
fn a_destination_that_cannot_be_reached_fails_its_clients_not_the_proxy() {
    let sim = Sim::start();
    let (mut proxy, addr) = start_proxy(&sim, "i-0000000000000dead", &[]);
    let (code, _s) = socks_connect(addr, &ipv4(Ipv4Addr::LOCALHOST), 80);
    assert_eq!(code, 1, "general failure");
    let line = proxy.wait_line("an error", |l| l.starts_with("rssm: 127.0.0.1:80: "));
    assert!(line.len() < 400, "{line}");
    // It is still serving: the next client gets the same answer, not a refused connection.
    let (code, _s) = socks_connect(addr, &ipv4(Ipv4Addr::LOCALHOST), 80);
    assert_eq!(code, 1);
    assert!(proxy.is_running());
}

#[test]
fn sessions_per_destination_share_its_connections() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let (_proxy, addr) = start_proxy(&sim, DEMO, &["--sessions", "2"]);
    let open: Vec<TcpStream> = (0..4u8)
        .map(|i| {
            let (code, mut s) = socks_connect(addr, &ipv4(Ipv4Addr::LOCALHOST), echo);
            assert_eq!(code, 0);
            s.write_all(&[i]).expect("write");
            let mut b = [0u8; 1];
            s.read_exact(&mut b).expect("echo");
            s
        })
        .collect();
    let per_session: Vec<u64> = sim
        .sim
        .state()
        .sessions()
        .values()
        .map(|r| r.streams_opened)
        .collect();
    assert_eq!(per_session, [2, 2], "two sessions, two connections each");
    drop(open);
}

/// A real HTTP server (Python's) on loopback, serving `dir`.
struct HttpServer(Child, u16);

impl HttpServer {
    fn start(dir: &std::path::Path) -> HttpServer {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for the HTTP server (scripts/test.sh installs it)");
        rssm_testkit::net::connect_when_listening(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            WAIT,
        );
        HttpServer(child, port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn curl_fetches_pages_through_the_proxy_by_name() {
    let sim = Sim::start();
    let dir = TempDir::new("socks-http");
    let page = pattern(42, 200_000);
    std::fs::write(dir.0.join("page.bin"), &page).expect("write page");
    let http = HttpServer::start(&dir.0);
    let (_proxy, addr) = start_proxy(&sim, DEMO, &[]);
    for _ in 0..2 {
        let mut curl = Command::new("curl");
        curl.args([
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "30",
            "--socks5-hostname",
            &addr.to_string(),
            &format!("http://localhost:{}/page.bin", http.1),
        ]);
        let out = run_bounded(curl, Duration::from_secs(40));
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == page, "{} bytes", out.stdout.len());
    }
    assert_eq!(sessions(&sim).len(), 1, "both requests used one session");
}

/// A CONNECT after RFC 1929 authentication; `None` when the proxy refuses the login.
fn socks_connect_as(
    proxy: SocketAddr,
    user: &str,
    password: &str,
    port: u16,
) -> Option<(u8, TcpStream)> {
    let mut s = connect(proxy);
    s.write_all(&[5, 1, 2])
        .expect("greeting: username/password");
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).expect("method choice");
    assert_eq!(choice, [5, 2], "username/password chosen");
    let mut login = vec![1, user.len() as u8];
    login.extend_from_slice(user.as_bytes());
    login.push(password.len() as u8);
    login.extend_from_slice(password.as_bytes());
    s.write_all(&login).expect("login");
    let mut status = [0u8; 2];
    s.read_exact(&mut status).expect("login status");
    assert_eq!(status[0], 1, "RFC 1929 version");
    if status[1] != 0 {
        return None;
    }
    let mut req = vec![5, 1, 0];
    req.extend_from_slice(&ipv4(Ipv4Addr::LOCALHOST));
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).expect("request");
    let code = read_reply(&mut s);
    Some((code, s))
}

#[test]
fn with_user_only_the_right_login_gets_through() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let mut cmd = sim.rssm();
    cmd.env("RSSM_SOCKS_PASSWORD", "s3cret-pw")
        .args(["socks", "0", "--via", DEMO, "--user", "alice"]);
    let mut proxy = Forward::spawn(cmd, Pipe::Stderr);
    let line = proxy.wait_line("SOCKS5 proxy on …", |l| l.starts_with("SOCKS5 proxy on "));
    let addr: SocketAddr = line
        .trim_start_matches("SOCKS5 proxy on ")
        .split(';')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    // No authentication offered: no acceptable method.
    let mut s = connect(addr);
    s.write_all(&[5, 1, 0]).expect("greeting");
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).expect("method choice");
    assert_eq!(choice, [5, 0xff]);
    assert!(socks_connect_as(addr, "alice", "wrong", echo).is_none());
    assert!(socks_connect_as(addr, "bob", "s3cret-pw", echo).is_none());
    let (code, s) = socks_connect_as(addr, "alice", "s3cret-pw", echo).expect("logged in");
    assert_eq!(code, 0);
    assert_eq!(echo_through(s, b"authenticated"), b"authenticated");
    proxy.ctrl_c_ends_cleanly();
    assert!(
        proxy.out.seen.iter().all(|l| !l.contains("s3cret-pw")),
        "{:?}",
        proxy.out.seen
    );
}

#[test]
fn user_without_a_password_in_the_environment_is_one_clear_line() {
    let sim = Sim::start();
    let mut cmd = sim.rssm();
    cmd.args(["socks", "0", "--via", DEMO, "--user", "alice"]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains("RSSM_SOCKS_PASSWORD"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn past_max_sessions_a_new_destination_is_refused_and_the_others_go_on() {
    let sim = Sim::start();
    let (echo_a, echo_b) = (echo_server(b""), echo_server(b""));
    let (mut proxy, addr) = start_proxy(&sim, DEMO, &["--max-sessions", "1"]);
    let (code, a) = socks_connect(addr, &ipv4(Ipv4Addr::LOCALHOST), echo_a);
    assert_eq!(code, 0);
    let (code, _b) = socks_connect(addr, &ipv4(Ipv4Addr::LOCALHOST), echo_b);
    assert_eq!(code, 1, "general failure");
    let said = proxy.wait_line("the refusal", |l| l.contains("--max-sessions"));
    assert!(said.contains(&format!("127.0.0.1:{echo_b}")), "{said}");
    assert_eq!(echo_through(a, b"still here"), b"still here");
    assert_eq!(sessions(&sim).len(), 1);
    proxy.ctrl_c_ends_cleanly();
}

#[test]
fn past_max_connections_a_client_is_refused_with_a_line() {
    let sim = Sim::start();
    let echo = echo_server(b"");
    let (mut proxy, addr) = start_proxy(&sim, DEMO, &["--max-connections", "1"]);
    let (code, first) = socks_connect(addr, &ipv4(Ipv4Addr::LOCALHOST), echo);
    assert_eq!(code, 0);
    // The first connection is open (its echo proves the forward took it).
    let mut first_reader = first.try_clone().expect("clone");
    (&first).write_all(b"open").expect("write");
    let mut buf = [0u8; 4];
    first_reader.read_exact(&mut buf).expect("echo");
    let (code, _second) = socks_connect(addr, &ipv4(Ipv4Addr::LOCALHOST), echo);
    assert_eq!(code, 1, "general failure");
    proxy.wait_line("the refusal", |l| l.contains("--max-connections"));
    drop((first, first_reader));
    proxy.ctrl_c_ends_cleanly();
}

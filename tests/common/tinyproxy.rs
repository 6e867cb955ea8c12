//! A real HTTP CONNECT proxy for the proxy tests: Debian's tinyproxy, on a loopback port, in the
//! foreground, logging every connection and request to a file the test reads.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::io::{Read, Write};
use std::net::TcpStream;

use rssm_testkit::net::free_port;
use rssm_testkit::wait;

use super::TempDir;

const TINYPROXY: &str = "/usr/bin/tinyproxy";
const WAIT: Duration = Duration::from_secs(60);

/// A running tinyproxy, killed when dropped.
pub struct Tinyproxy {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Tinyproxy {
    /// Starts tinyproxy; with `login`, it demands those basic-auth credentials.
    pub fn start(login: Option<(&str, &str)>) -> Tinyproxy {
        assert!(
            std::path::Path::new(TINYPROXY).exists(),
            "{TINYPROXY} is missing: install Debian's tinyproxy (scripts/test.sh does)"
        );
        // A port from free_port() may be taken by another test's listener before tinyproxy
        // binds it: then tinyproxy exits, and the port answers as something else. Try again.
        for _ in 0..5 {
            if let Some(proxy) = Tinyproxy::try_start(login) {
                return proxy;
            }
        }
        panic!("tinyproxy did not start on any of 5 free ports");
    }

    fn try_start(login: Option<(&str, &str)>) -> Option<Tinyproxy> {
        let dir = TempDir::new("tinyproxy");
        let port = free_port();
        let log = dir.0.join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 600\nLogFile \"{}\"\nLogLevel Connect\n\
             MaxClients 200\nAllow 127.0.0.1\n",
            log.display()
        );
        if let Some((user, pass)) = login {
            conf.push_str(&format!("BasicAuth {user} {pass}\n"));
        }
        let conf_path = dir.0.join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).expect("write tinyproxy.conf");
        let child = Command::new(TINYPROXY)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy starts");
        let mut proxy = Tinyproxy {
            child,
            port,
            log,
            _dir: dir,
        };
        // Listening, and it is tinyproxy that answers.
        let answer = wait::until(&format!("an answer on port {port}"), WAIT, || {
            if proxy.child.try_wait().ok().flatten().is_some() {
                return Some(String::new());
            }
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(WAIT)).ok()?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            Some(answer)
        });
        let ours =
            answer.contains("Server: tinyproxy") && proxy.child.try_wait().ok().flatten().is_none();
        if !ours {
            let _ = proxy.child.kill();
        }
        ours.then_some(proxy)
    }

    /// `http://127.0.0.1:PORT`, with `user:pass@` when given.
    pub fn url(&self, login: Option<(&str, &str)>) -> String {
        match login {
            Some((user, pass)) => format!("http://{user}:{pass}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// What tinyproxy has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has a line containing every one of `needles`.
    pub fn wait_log(&self, needles: &[&str]) -> String {
        wait::until(&format!("tinyproxy to log {needles:?}"), WAIT, || {
            self.log()
                .lines()
                .find(|line| needles.iter().all(|n| line.contains(n)))
                .map(str::to_owned)
        })
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

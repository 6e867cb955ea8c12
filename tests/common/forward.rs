//! `rssm forward` as a child process, and connections and round trips through it within
//! [`WAIT`] (rssm-testkit's, bounded).

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use rssm_testkit::lines::Lines;
use rssm_testkit::wait;
use sha2::{Digest, Sha256};

use super::{Sim, DEMO};

/// Longest wait for anything that should be quick (a line, a connection, an exit).
pub const WAIT: Duration = Duration::from_secs(30);

/// A running `rssm forward DEMO …` with its stderr collected line by line.
pub struct Forward {
    pub child: Child,
    /// The output read (stderr, or stdout for [`Pipe::Stdout`]), every line seen so far.
    pub out: Lines,
}

impl Forward {
    pub fn start(sim: &Sim, args: &[&str]) -> Forward {
        let mut cmd = sim.rssm();
        cmd.arg("forward").arg(DEMO).args(args);
        Forward::spawn(cmd, Pipe::Stderr)
    }

    /// Runs `cmd`, collecting the lines of `pipe` (the other output is discarded).
    pub fn spawn(mut cmd: std::process::Command, pipe: Pipe) -> Forward {
        let (stdout, stderr) = match pipe {
            Pipe::Stderr => (Stdio::null(), Stdio::piped()),
            Pipe::Stdout => (Stdio::piped(), Stdio::null()),
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("rssm starts");
        let out = match pipe {
            Pipe::Stderr => Lines::read(child.stderr.take().expect("stderr piped")),
            Pipe::Stdout => Lines::read(child.stdout.take().expect("stdout piped")),
        };
        Forward { child, out }
    }

    /// Waits up to [`WAIT`] for an output line matching `pred` (looking at lines already seen
    /// first).
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.out.wait_line(what, WAIT, pred)
    }

    /// The `n`th `Forwarding ADDR -> HOST:PORT via TARGET (SESSION)` line, parsed.
    pub fn forwarding(&mut self, n: usize) -> Forwarding {
        let mut found = Vec::new();
        while found.len() <= n {
            let line = self.wait_line("Forwarding …", |l| {
                l.starts_with("Forwarding ") && !found.contains(&l.to_owned())
            });
            found.push(line);
        }
        Forwarding::parse(&found[n])
    }

    /// Ctrl-C to a command that is still running: it must exit 0.
    pub fn ctrl_c_ends_cleanly(&mut self) {
        assert!(
            self.is_running(),
            "exited early; stderr {:?}",
            self.out.seen
        );
        self.interrupt();
        let status = self.wait_exit();
        assert!(status.success(), "{status:?}; stderr {:?}", self.out.seen);
    }

    pub fn interrupt(&self) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0, "SIGINT delivered");
    }

    /// Waits for the child to exit, then for the end of its output; returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = &mut self.child;
        let status = wait::until("exit of rssm", WAIT, || {
            child.try_wait().expect("wait works")
        });
        if let Err(e) = self.out.read_to_end(WAIT) {
            panic!(
                "rssm exited, its output did not end ({e:?}): {:?}",
                self.out.seen
            );
        }
        status
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait works").is_none()
    }

    /// Peak resident memory of the child so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        rssm_testkit::proc::peak_rss(self.child.id())
    }

    /// CPU time the child has used so far (user, system), from /proc.
    pub fn cpu_time(&self) -> (Duration, Duration) {
        rssm_testkit::proc::cpu_time(self.child.id())
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which output of the child a [`Forward`] reads.
pub enum Pipe {
    Stderr,
    Stdout,
}

/// A parsed `Forwarding` line.
#[derive(Debug)]
pub struct Forwarding {
    pub local: SocketAddr,
    pub remote: String,
    pub session_id: String,
}

impl Forwarding {
    pub fn parse(line: &str) -> Forwarding {
        // Forwarding 127.0.0.1:PORT -> HOST:RPORT via TARGET (SESSION)
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            words.len() >= 7 && words[2] == "->" && words[4] == "via",
            "unexpected line {line:?}"
        );
        Forwarding {
            local: words[1].parse().expect("local address"),
            remote: words[3].to_owned(),
            session_id: words[6]
                .trim_start_matches('(')
                .trim_end_matches([')', ';'])
                .to_owned(),
        }
    }
}

/// [`rssm_testkit::net::connect`] within [`WAIT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    rssm_testkit::net::connect(addr, WAIT)
}

/// [`rssm_testkit::net::round_trip`] within [`WAIT`].
pub fn round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    rssm_testkit::net::round_trip(addr, data, WAIT)
}

/// Reads `stream` to its end (each read bounded by the stream's timeout), hashing as it goes:
/// the sha256 and the length of what came, out of `expected` bytes (for the failure message).
pub fn read_digest(stream: &TcpStream, expected: usize) -> (sha2::digest::Output<Sha256>, usize) {
    let mut hash = Sha256::new();
    let mut len = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return (hash.finalize(), len),
            Ok(n) => {
                hash.update(&buf[..n]);
                len += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the stream stalled after {len} of {expected} bytes: {e}"),
        }
    }
}

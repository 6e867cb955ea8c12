//! `rssm forward` as a child process, and the TCP helpers its tests use: echo servers, bounded
//! connections, round trips, test patterns.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::{Sim, DEMO};

/// Longest wait for anything that should be quick (a line, a connection, an exit).
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `rssm forward DEMO …` with its stderr collected line by line.
pub struct Forward {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stderr line seen so far.
    pub seen: Vec<String>,
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
        let output: Box<dyn Read + Send> = match pipe {
            Pipe::Stderr => Box::new(child.stderr.take().expect("stderr piped")),
            Pipe::Stdout => Box::new(child.stdout.take().expect("stdout piped")),
        };
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Forward {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for an output line matching `pred` (looking at lines already seen first).
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_line_within(what, WAIT, pred)
    }

    /// [`Forward::wait_line`] with a deadline of its own.
    pub fn wait_line_within(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what} within {within:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Collects stderr lines that arrive within `d`.
    pub fn drain_lines(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
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
        assert!(self.is_running(), "exited early; stderr {:?}", self.seen);
        self.interrupt();
        let status = self.wait_exit();
        assert!(status.success(), "{status:?}; stderr {:?}", self.seen);
    }

    pub fn interrupt(&self) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0, "SIGINT delivered");
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                self.drain_lines(Duration::from_millis(200));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rssm did not exit within {WAIT:?}; stderr {:?}",
                self.seen
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait works").is_none()
    }

    /// Peak resident memory of the child so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib * 1024
    }

    /// CPU time the child has used so far (user, system), from /proc.
    pub fn cpu_time(&self) -> (Duration, Duration) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("/proc/PID/stat");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let secs = |i: usize| Duration::from_secs_f64(fields[i].parse::<f64>().unwrap() / ticks);
        (secs(11), secs(12))
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

/// A TCP server on 127.0.0.1 that writes `banner`, then echoes until the client half-closes.
pub fn echo_server(banner: &'static [u8]) -> u16 {
    serve_echo(
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind"),
        banner,
    )
}

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

/// A port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect to the forward");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.set_write_timeout(Some(WAIT)).expect("timeout");
    s
}

/// Sends `data` (then half-closes) while reading everything that comes back.
pub fn round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let stream = connect(addr);
    let mut writer = stream.try_clone().expect("clone");
    thread::scope(|scope| {
        scope.spawn(move || {
            writer.write_all(data).expect("write through the forward");
            writer.shutdown(Shutdown::Write).expect("half-close");
        });
        let mut got = Vec::new();
        (&stream)
            .read_to_end(&mut got)
            .expect("read through the forward");
        got
    })
}

/// Deterministic test bytes, different per `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

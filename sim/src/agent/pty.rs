//! A minimal PTY: `openpty(3)`, a child in a new session with the PTY as its controlling terminal,
//! resize via `TIOCSWINSZ`. Written on `libc` directly because that is all the simulator needs;
//! `portable-pty` would bring a much larger dependency tree for the same three calls.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// The master side of a PTY with a running child. The master is non-blocking: read it with
/// [`read`] and write it with [`write_all`], which wait with `poll(2)`, so that a writer stuck on
/// a terminal nobody reads any more (the command died with input still coming) can be told to
/// give up.
pub struct Pty {
    /// Master, for reading child output.
    pub reader: File,
    /// Master (dup), for writing child input and resizing.
    pub writer: File,
    /// The child process.
    pub child: Child,
}

fn winsize(cols: u16, rows: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Starts `cmd` on a new PTY of the given size.
pub fn spawn(mut cmd: Command, cols: u16, rows: u16) -> io::Result<Pty> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let ws = winsize(cols, rows);
    // SAFETY: openpty writes two fds into the provided out-pointers; name and termios may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both fds are open and owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let stdin = slave.try_clone()?;
    let stdout = slave.try_clone()?;
    cmd.stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls (signal, setsid, ioctl) run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            default_signals();
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Our copies of the slave fds are dropped with `cmd`; the child keeps its own.
    drop(cmd);
    // SAFETY: F_GETFL/F_SETFL on an fd we own.
    unsafe {
        let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    let writer = File::from(master.try_clone()?);
    Ok(Pty {
        reader: File::from(master),
        writer,
        child,
    })
}

/// Waits until `fd` is ready for `events` or `timeout_ms` passes (-1: no limit).
fn wait(fd: &File, events: libc::c_short, timeout_ms: libc::c_int) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Reads what the child wrote, waiting for it; fails (EIO) once the child's side is closed.
pub fn read(master: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    loop {
        match master.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(master, libc::POLLIN, -1)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Writes all of `data` to the child's input, waiting while the terminal is full, until `stop`
/// is set (the session ended: nobody may ever read it).
pub fn write_all(
    master: &mut File,
    mut data: &[u8],
    stop: &std::sync::atomic::AtomicBool,
) -> io::Result<()> {
    use std::io::Write;
    while !data.is_empty() {
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            return Err(io::Error::other("the session ended"));
        }
        match master.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(master, libc::POLLOUT, 100)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets the terminal size (what the agent does for a Size payload, §9.1).
pub fn resize(master: &File, cols: u16, rows: u16) -> io::Result<()> {
    let ws = winsize(cols, rows);
    // SAFETY: TIOCSWINSZ reads a winsize struct from the pointer; the fd is a valid PTY master.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Gives a child of the agent the signal dispositions it would have under the real agent, which
/// runs as a service with the defaults: a simulator started from a background job (`cmd &` in a
/// script) inherits SIGINT and SIGQUIT ignored, and so would every remote shell and command, so
/// that Ctrl-C could not reach them. To be called between fork and exec.
///
/// # Safety
/// Only in a `pre_exec` hook: it calls `signal(2)` (async-signal-safe) and nothing else.
pub(super) unsafe fn default_signals() {
    for sig in [libc::SIGINT, libc::SIGQUIT] {
        libc::signal(sig, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_command_on_a_pty_with_its_size() {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("stty size; echo done");
        let mut pty = spawn(cmd, 91, 37).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        // Reading the master fails with EIO once the child exits: that ends the loop.
        for _ in 0..100 {
            match read(&mut pty.reader, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&out).contains("done") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("37 91"), "{text}");
        let stop = std::sync::atomic::AtomicBool::new(false);
        write_all(&mut pty.writer, b"", &stop).unwrap();
        let _ = pty.child.wait();
    }
}

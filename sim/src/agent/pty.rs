//! A minimal PTY: `openpty(3)`, a child in a new session with the PTY as its controlling terminal,
//! resize via `TIOCSWINSZ`. Written on `libc` directly because that is all the simulator needs;
//! `portable-pty` would bring a much larger dependency tree for the same three calls.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// The master side of a PTY with a running child.
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
    let writer = File::from(master.try_clone()?);
    Ok(Pty {
        reader: File::from(master),
        writer,
        child,
    })
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
    use std::io::{Read, Write};

    #[test]
    fn runs_a_command_on_a_pty_with_its_size() {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("stty size; echo done");
        let mut pty = spawn(cmd, 91, 37).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        // Reading the master fails with EIO once the child exits: that ends the loop.
        for _ in 0..100 {
            match pty.reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&out).contains("done") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("37 91"), "{text}");
        let _ = pty.writer.write_all(b"");
        let _ = pty.child.wait();
    }
}

"""The benchmark's test kit: loopback TCP servers (sink, source, echo-like), free ports,
connecting once something listens, payload patterns, and a process's CPU seconds and peak RSS
from /proc. The Rust tests' equivalents are in the rssm-testkit crate (testkit/)."""

import hashlib
import os
import socket
import threading
import time

# One MiB of a byte ramp (0, 1, …, 255, 0, …): cheap to make, easy to recognise.
RAMP_MIB = bytes(range(256)) * 4096
# 64 KiB of zero bytes: never a `k` for the ping server.
ZEROS_64K = bytes(1 << 16)


def random_block(size=1 << 20):
    """`size` random bytes (incompressible payload)."""
    return os.urandom(size)


def send_size(conn, size, block):
    """Sends `size` bytes on `conn`, `block` after `block` (the last one cut short)."""
    left = size
    while left > 0:
        n = min(left, len(block))
        conn.sendall(block[:n] if n < len(block) else block)
        left -= n


def read_all(conn, bufsize=1 << 16):
    """Reads `conn` to its end; returns how many bytes came."""
    got = 0
    while b := conn.recv(bufsize):
        got += len(b)
    return got


def free_port():
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listener(backlog):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


def connect_when_listening(port, proc, limit=20):
    """A connection to 127.0.0.1:`port` once something listens there (`proc`, whose stderr is
    shown if it does not within `limit` seconds)."""
    deadline = time.time() + limit
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port))
        except OSError:
            if time.time() > deadline:
                why = proc.stderr.read1(4096).decode(errors="replace") if proc.stderr else ""
                raise SystemExit("rssm forward did not listen: " + why)
            time.sleep(0.05)


def proc_cpu_rss(pid):
    """CPU seconds (user + system) and peak RSS in bytes (VmHWM) of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) * 1024
    return cpu, rss


class Sink:
    """A loopback TCP server for one connection: mode 'discard' reads everything and counts
    (and hashes) it; mode 'source' sends SIZE bytes then closes."""

    def __init__(self, mode, size):
        self.mode, self.size = mode, size
        self.sock = listener(4)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.digest = hashlib.sha256()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.sock.accept()
        with conn:
            if self.mode == "discard":
                while True:
                    b = conn.recv(1 << 20)
                    if not b:
                        break
                    self.received += len(b)
                    self.digest.update(b)
            else:
                send_size(conn, self.size, RAMP_MIB)
                conn.shutdown(socket.SHUT_WR)
                read_all(conn)


class Server:
    """A loopback TCP server for many connections: each is served by `serve(conn)` on a thread
    of its own."""

    def __init__(self, backlog=128):
        self.sock = listener(backlog)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        raise NotImplementedError


class PingServer(Server):
    """Answers every `k` it reads with a `k` and discards everything else: one destination for
    both the bulk upload and the pings, so they can share one forward (one session)."""

    def __init__(self):
        super().__init__(backlog=8)

    @staticmethod
    def serve(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                b = conn.recv(1 << 16)
                if not b:
                    return
                n = b.count(b"k")
                if n:
                    conn.sendall(b"k" * n)


class Exchange(Server):
    """A loopback server for many connections: each gets SIZE bytes sent while everything it
    sends is read and discarded."""

    def __init__(self, size):
        self.size = size
        super().__init__()

    def serve(self, conn):
        with conn:
            threading.Thread(target=read_all, args=(conn,), daemon=True).start()
            send_size(conn, self.size, ZEROS_64K)
            conn.shutdown(socket.SHUT_WR)
            time.sleep(30)


class Drain(Server):
    """A loopback server for many connections: reads each to its end, then closes it, so a
    client sees end-of-file once everything it sent has arrived."""

    @staticmethod
    def serve(conn):
        with conn:
            read_all(conn)

#!/usr/bin/env python3
"""rssm benchmarks against rssm-sim on loopback: forward throughput, CPU and memory.

Usage:  python3 bench/run.py [--runs 3] [--size-mib 256] [--capped-size-mib 16] [--skip-build]

Builds the release binaries (cargo build --release -p rssm -p rssm-sim), then for each scenario
starts a simulator and `rssm forward`, pushes SIZE MiB through one TCP connection to a local echo
sink, and records wall time, rssm's CPU seconds (utime+stime from /proc) and peak RSS (VmHWM).
Each figure is the median of --runs runs. Prints a Markdown table (paste into BENCHMARKS.md).

Scenarios:
  (a) service-like: the simulator's message-rate cap (1000 msgs/s per session, like the real
      service) and the agent's 1 ms pause per 1024-byte read;
  (b) limits off: no rate cap, no read pause — the protocol stack's ceiling.
"""

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "i-0123456789abcdef0"


def build():
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "rssm", "-p", "rssm-sim"],
        cwd=ROOT,
        check=True,
    )


def bin_path(name):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """A loopback TCP server: mode 'discard' reads everything and counts it; mode 'source'
    sends SIZE bytes then closes."""

    def __init__(self, mode, size):
        self.mode, self.size = mode, size
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
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
                chunk = bytes(range(256)) * 4096  # 1 MiB
                left = self.size
                while left > 0:
                    n = min(left, len(chunk))
                    conn.sendall(chunk[:n])
                    left -= n
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass


def proc_cpu_rss(pid):
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


def start_sim(capped):
    args = [bin_path("rssm-sim"), "serve", "--listen", "127.0.0.1:0", "--log-level", "warn"]
    if capped:
        args += ["--rate-limit", "1000", "--agent-read-pause-ms", "1"]
    else:
        args += ["--agent-read-pause-ms", "0"]
    sim = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("AWS_"):
            del env[k]
    env.update(AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               AWS_EC2_METADATA_DISABLED="true")
    while True:
        line = sim.stdout.readline()
        if not line:
            raise SystemExit("rssm-sim exited before printing its environment")
        if line.startswith("export "):
            k, v = line[len("export "):].strip().split("=", 1)
            env[k] = v
            if k == "AWS_SECRET_ACCESS_KEY":
                return sim, env


def one_run(direction, capped, size):
    sim, env = start_sim(capped)
    sink = Sink("discard" if direction == "upload" else "source", size)
    local = free_port()
    rssm = subprocess.Popen(
        [bin_path("rssm"), "forward", TARGET, "-q", "-L", f"{local}:localhost:{sink.port}"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", local))
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("rssm forward did not listen: "
                                     + rssm.stderr.read1(4096).decode(errors="replace"))
                time.sleep(0.05)
        cpu0, _ = proc_cpu_rss(rssm.pid)
        start = time.monotonic()
        moved = 0
        if direction == "upload":
            chunk = os.urandom(1 << 20)
            left = size
            while left > 0:
                n = min(left, len(chunk))
                conn.sendall(chunk[:n])
                left -= n
            conn.shutdown(socket.SHUT_WR)
            sink.thread.join(timeout=3600)
            moved = sink.received
        else:
            while True:
                b = conn.recv(1 << 20)
                if not b:
                    break
                moved += len(b)
        elapsed = time.monotonic() - start
        cpu1, rss = proc_cpu_rss(rssm.pid)
        conn.close()
        if moved != size:
            raise SystemExit(f"{direction}: moved {moved} of {size} bytes")
        return size / elapsed / 1e6, (cpu1 - cpu0) * (100 * 2**20) / size, rss / 2**20
    finally:
        rssm.terminate()
        rssm.wait(timeout=10)
        sim.terminate()
        sim.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--capped-size-mib", type=int, default=16,
                    help="(a) moves ~1 MB/s by design: 256 MiB would take minutes per run")
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    if not args.skip_build:
        build()
    print(f"machine: {os.cpu_count()} cores; median of {args.runs} runs; one TCP connection\n")
    print("| scenario | direction | size | MB/s | rssm CPU s / 100 MiB | rssm peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for capped, label, mib in [(False, "(b) limits off", args.size_mib),
                               (True, "(a) service-like cap", args.capped_size_mib)]:
        for direction in ["upload", "download"]:
            results = [one_run(direction, capped, mib * 2**20) for _ in range(args.runs)]
            mbps = statistics.median(r[0] for r in results)
            cpu = statistics.median(r[1] for r in results)
            rss = max(r[2] for r in results)
            print(f"| {label} | {direction} | {mib} MiB | {mbps:.1f} | {cpu:.2f} | {rss:.1f} |",
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())

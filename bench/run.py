#!/usr/bin/env python3
"""rssm benchmarks against rssm-sim on loopback: forward throughput, CPU and memory, keystroke
latency under bulk load, and shell start-up time.

Usage:  python3 bench/run.py [--runs 3] [--size-mib 256] [--capped-size-mib 16] [--skip-build]

Builds the release binaries (cargo build --release -p rssm -p rssm-sim), then for each scenario
starts a simulator and `rssm forward`, pushes SIZE MiB through one TCP connection to a local echo
sink, and records wall time, rssm's CPU seconds (utime+stime from /proc) and peak RSS (VmHWM).
Each figure is the median of --runs runs. Prints a Markdown table (paste into BENCHMARKS.md).

Scenarios:
  (a) service-like: the simulator's message-rate cap (1000 msgs/s per session, like the real
      service) and the agent's 1 ms pause per 1024-byte read; rssm with its default pacing. The
      table says which share of the cap was used and how many messages the simulator throttled.
  (b) limits off: no rate cap, no read pause, `--max-msg-rate 0` — the protocol stack's ceiling.
Hostile: rssm's peak RSS when the simulated agent floods it once (rssm-sim --hostile).
Kills: the capped download again, with two websocket kills, next to the same without: what
resuming costs, the agent frames the gateway dropped meanwhile, and rssm's reconnect time.
Latency: 1-byte pings through a forward to a server that answers each `k` (p50/p99 of 300 pings),
idle, while another connection of the same forward uploads bulk data, and while another session
does. Many connections: 50 at once through one forward (limits off), 2 MiB each way each, with
rssm's peak RSS. Striping: 8 parallel connections through `forward --sessions 1` and `4` under
the cap. Start-up: from starting `rssm shell` on a PTY to the remote prompt. cp: `rssm cp` of a
--capped-size-mib file each way under the cap, one session and four (bench/cp.py).
"""

import argparse
import os
import pty
import re
import select
import socket
import statistics
import subprocess
import sys
import threading
import time

from kit import (ZEROS_64K, Drain, Exchange, PingServer, Sink, connect_when_listening,
                 free_port, proc_cpu_rss, random_block, read_all, send_size)

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


def start_sim(capped, log=None, extra=()):
    args = [bin_path("rssm-sim"), "serve", "--listen", "127.0.0.1:0", "--log-level", "info"]
    args += list(extra)
    if capped:
        args += ["--rate-limit", "1000", "--agent-read-pause-ms", "1"]
    else:
        args += ["--agent-read-pause-ms", "0"]
    sim = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL,
                           text=True)
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


def rssm_args(capped):
    """rssm keeps its default pacing under the service-like cap and drops it for (b)."""
    return [bin_path("rssm")] + ([] if capped else ["--max-msg-rate", "0"])


def start_forward(capped, env, local, port, args=("-q",), stderr=subprocess.PIPE, text=False):
    """`rssm forward TARGET ARGS -L LOCAL:localhost:PORT` against the simulator of `env`."""
    return subprocess.Popen(
        rssm_args(capped) + ["forward", TARGET, *args, "-L", f"{local}:localhost:{port}"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, text=text)


def shut_down(procs, sim, wait=10, settle=0.0):
    """Ctrl-C to each rssm (it ends its session, so the simulator logs its summary), then, after
    `settle` seconds for that summary, the simulator's end."""
    for p in procs:
        p.send_signal(2)
        p.wait(timeout=wait)
    if settle:
        time.sleep(settle)
    sim.terminate()
    sim.wait(timeout=10)


def throttled(log_path):
    """Messages the simulator throttled, from its session summaries."""
    with open(log_path) as f:
        return sum(int(m) for m in re.findall(r"throttled=(\d+)", f.read()))


def one_run(direction, capped, size, sim_extra=(), rssm_log=None):
    """One transfer; with `rssm_log` (a file), rssm runs without -q and its notices go there."""
    log_path = f"/tmp/rssm-bench-sim-{os.getpid()}.log"
    with open(log_path, "w") as log:
        sim, env = start_sim(capped, log, sim_extra)
    sink = Sink("discard" if direction == "upload" else "source", size)
    local = free_port()
    quiet = [] if rssm_log else ["-q"]
    rssm = start_forward(capped, env, local, sink.port, quiet, stderr=rssm_log or subprocess.PIPE)
    try:
        conn = connect_when_listening(local, rssm)
        cpu0, _ = proc_cpu_rss(rssm.pid)
        start = time.monotonic()
        moved = 0
        if direction == "upload":
            send_size(conn, size, random_block())
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
        result = [size / elapsed / 1e6, (cpu1 - cpu0) * (100 * 2**20) / size, rss / 2**20]
    finally:
        shut_down([rssm], sim, settle=0.3)
    # Stream messages per second (1024-byte payloads) against the cap of 1000.
    msgs = size / 1024 / (size / result[0] / 1e6)
    with open(log_path) as f:
        dropped = sum(int(m) for m in re.findall(r"dropped_while_away=(\d+)", f.read()))
    return result + [msgs / 1000 * 100, throttled(log_path), dropped]


def kill_run(kills, mib, every_secs=5.0, gateway=()):
    """A capped download of `mib` MiB during which the simulator drops the client's websocket
    `kills` times (each connection `every_secs` after it opened). Returns wall seconds, the agent
    frames the gateway dropped while the client was away, and rssm's reconnect times (from the
    websocket's error to the new connection, as its `resumed after` notices say)."""
    extra = list(gateway)
    if kills:
        extra += ["--kill-after-secs", str(every_secs), "--kill-times", str(kills)]
    log = f"/tmp/rssm-bench-rssm-{os.getpid()}.log"
    with open(log, "w") as f:
        r = one_run("download", True, mib * 2**20, extra, rssm_log=f)
    with open(log) as f:
        gaps = [float(n) / (1000 if unit == "ms" else 1)
                for n, unit in re.findall(r"resumed after ([0-9.]+) (ms|s)", f.read())]
    if len(gaps) != kills:
        raise SystemExit(f"expected {kills} resumes, saw {len(gaps)} (see {log})")
    return mib * 2**20 / r[0] / 1e6, r[5], gaps


def bulk_upload(port, proc, stop):
    conn = connect_when_listening(port, proc)
    while not stop.is_set():
        conn.sendall(ZEROS_64K)  # never a `k`
    conn.close()


def latency(mode, pings=300):
    """p50/p99 ping round trip in ms through a capped simulator with rssm's default pacing;
    mode: idle, same-forward (bulk on another connection of the forward), other-session."""
    sim, env = start_sim(True)
    server = PingServer()
    procs = []
    stop = threading.Event()
    try:
        local = free_port()
        fwd = start_forward(True, env, local, server.port)
        procs.append(fwd)
        bulk_port, bulk_proc = local, fwd
        if mode == "other-session":
            bulk_port = free_port()
            bulk_proc = start_forward(True, env, bulk_port, server.port)
            procs.append(bulk_proc)
        conn = connect_when_listening(local, fwd)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if mode != "idle":
            threading.Thread(target=bulk_upload, args=(bulk_port, bulk_proc, stop),
                             daemon=True).start()
            time.sleep(2)  # let the bulk transfer fill every queue it can
        samples = []
        for _ in range(pings):
            t = time.perf_counter()
            conn.sendall(b"k")
            if conn.recv(1) != b"k":
                raise SystemExit("ping: bad answer")
            samples.append((time.perf_counter() - t) * 1000)
            time.sleep(0.02)
        conn.close()
        samples.sort()
        return samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]
    finally:
        stop.set()
        shut_down(procs, sim)


def at_once(count, one):
    """Runs `one` on `count` threads at once; seconds until all are done. `one` returns an error
    text or None (an OSError counts as its text); any error ends the benchmark."""
    errors = []

    def run():
        try:
            error = one()
        except OSError as e:
            error = str(e)
        if error:
            errors.append(error)

    start = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    elapsed = time.monotonic() - start
    if errors:
        raise SystemExit(f"{len(errors)} connections failed: {errors[0]}")
    return elapsed


def many_connections(count=50, mib_each=2):
    """`count` connections at once through one forward (limits off), each sending and receiving
    MIB_EACH MiB: (seconds, rssm peak RSS MiB)."""
    sim, env = start_sim(False)
    server = Exchange(mib_each << 20)
    local = free_port()
    rssm = start_forward(False, env, local, server.port)

    def one():
        conn = connect_when_listening(local, rssm)
        reader_got = [0]

        def read():
            while b := conn.recv(1 << 16):
                reader_got[0] += len(b)

        r = threading.Thread(target=read)
        r.start()
        send_size(conn, mib_each << 20, random_block(1 << 16))
        conn.shutdown(socket.SHUT_WR)
        r.join(timeout=600)
        conn.close()
        if reader_got[0] != mib_each << 20:
            return f"received {reader_got[0]} bytes"
        return None

    try:
        connect_when_listening(local, rssm).close()
        elapsed = at_once(count, one)
        _, rss = proc_cpu_rss(rssm.pid)
        return elapsed, rss / 2**20
    finally:
        shut_down([rssm], sim)


def striping(sessions, direction, conns=8, mib_each=2):
    """`conns` parallel connections through `rssm forward --sessions N` under the service-like
    cap, each moving MIB_EACH MiB one way: (aggregate MB/s, messages throttled)."""
    log_path = f"/tmp/rssm-bench-sim-{os.getpid()}.log"
    with open(log_path, "w") as log:
        sim, env = start_sim(True, log)
    size = mib_each << 20
    server = Drain() if direction == "upload" else Exchange(size)
    local = free_port()
    rssm = start_forward(True, env, local, server.port, ["--sessions", str(sessions)], text=True)

    def one():
        conn = socket.create_connection(("127.0.0.1", local))
        if direction == "upload":
            send_size(conn, size, ZEROS_64K)
            conn.shutdown(socket.SHUT_WR)
            read_all(conn)
            conn.close()
            return None
        conn.shutdown(socket.SHUT_WR)
        got = read_all(conn)
        conn.close()
        return f"received {got} bytes" if got != size else None

    try:
        # Every session up first: the figure is throughput, not start-up.
        up = 0
        deadline = time.time() + 30
        while up < sessions:
            line = rssm.stderr.readline()
            if not line or time.time() > deadline:
                raise SystemExit(f"rssm forward --sessions {sessions} did not start: {line}")
            up += line.startswith("Forwarding ")
        threading.Thread(target=lambda: [None for _ in rssm.stderr], daemon=True).start()
        elapsed = at_once(conns, one)
    finally:
        shut_down([rssm], sim, wait=15, settle=0.3)
    return conns * size / elapsed / 1e6, throttled(log_path)


def shell_startup():
    """Seconds from starting `rssm shell` on a PTY to the remote prompt."""
    sim, env = start_sim(True)
    try:
        master, slave = pty.openpty()
        start = time.monotonic()
        proc = subprocess.Popen(rssm_args(True) + ["shell", TARGET], env=env, stdin=slave,
                                stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        seen = b""
        while not re.search(rb"[#$] $", seen):
            if time.monotonic() - start > 30:
                raise SystemExit(f"no prompt: {seen!r}")
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                seen += os.read(master, 4096)
        elapsed = time.monotonic() - start
        os.write(master, b"exit\r")
        proc.wait(timeout=10)
        os.close(master)
        return elapsed
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--capped-size-mib", type=int, default=16,
                    help="(a) moves ~1 MB/s by design: 256 MiB would take minutes per run")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--only", default="throughput,kills,hostile,latency,striping,many,shell,cp",
                    help="comma-separated sections to run")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if not args.skip_build:
        build()
    print(f"machine: {os.cpu_count()} cores; median of {args.runs} runs\n")
    if "throughput" in only:
        throughput(args)
    if "kills" in only:
        kill_rows(args)
    if "hostile" in only:
        hostile(args)
    if "latency" in only:
        latencies(args)
    if "striping" in only:
        stripes(args)
    if "many" in only:
        many(args)
    if "shell" in only:
        shell(args)
    if "cp" in only:
        import cp
        cp.rows(args.runs, args.capped_size_mib)


def throughput(args):
    print("Forward throughput, one TCP connection:\n")
    print("| scenario | direction | size | MB/s | % of cap | throttled | rssm CPU s / 100 MiB "
          "| rssm peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for capped, label, mib in [(False, "(b) limits off", args.size_mib),
                               (True, "(a) service-like cap", args.capped_size_mib)]:
        for direction in ["upload", "download"]:
            results = [one_run(direction, capped, mib * 2**20) for _ in range(args.runs)]
            mbps = statistics.median(r[0] for r in results)
            cpu = statistics.median(r[1] for r in results)
            rss = max(r[2] for r in results)
            share = f"{statistics.median(r[3] for r in results):.1f}" if capped else "–"
            thr = sum(r[4] for r in results)
            print(f"| {label} | {direction} | {mib} MiB | {mbps:.1f} | {share} | {thr} "
                  f"| {cpu:.2f} | {rss:.1f} |", flush=True)


def kill_rows(args):
    mib = args.capped_size_mib
    print(f"\n{mib} MiB download through a forward under the service-like cap, with and without "
          "two websocket kills (each connection killed 5 s after it opened):\n")
    print("| gateway while the client is away | kills | seconds | cost of the kills s "
          "| agent frames dropped per kill | reconnect ms (error to new websocket) |")
    print("|---|---|---|---|---|---|")
    base = None
    for label, gateway, kills in [("–", (), 0),
                                  ("pauses the agent (default)", (), 2),
                                  ("does not pause the agent", ("--no-agent-pause",), 2),
                                  ("does not pause the agent; ResumeSession takes 50 ms",
                                   ("--no-agent-pause", "--delay-api", "ResumeSession=0.05"), 2)]:
        runs = [kill_run(kills, mib, gateway=gateway) for _ in range(args.runs)]
        secs = statistics.median(r[0] for r in runs)
        base = secs if base is None else base
        cost = "–" if kills == 0 else f"{secs - base:.2f}"
        dropped = "–" if kills == 0 else f"{statistics.median(r[1] for r in runs) / kills:.1f}"
        gaps = [g for r in runs for g in r[2]]
        gap = "–" if not gaps else f"{statistics.median(gaps) * 1000:.0f} (max {max(gaps) * 1000:.0f})"
        print(f"| {label} | {kills} | {secs:.2f} | {cost} | {dropped} | {gap} |", flush=True)


def hostile_rss(mode):
    """Peak RSS of `rssm forward` whose session's agent misbehaves in `mode` once (rssm-sim
    --hostile), read once it has stayed the same for 2 s (the flood is over)."""
    extra = [] if mode is None else ["--hostile", mode]
    sim, env = start_sim(False, None, extra)
    local = free_port()
    rssm = start_forward(False, env, local, 9, stderr=subprocess.DEVNULL)
    try:
        last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.2)
            _, rss = proc_cpu_rss(rssm.pid)
            if rss != last:
                last, stable_since = rss, time.monotonic()
            elif time.monotonic() - stable_since > 2:
                break
        return last / 2**20
    finally:
        shut_down([rssm], sim)


def hostile(args):
    print("\nrssm forward's peak RSS when its agent misbehaves once (rssm-sim --hostile), MiB:\n")
    print("| agent | peak RSS MiB |")
    print("|---|---|")
    for mode in [None, "far-future-sequence", "near-future-flood", "oversized-frame",
                 "smux-syn-flood"]:
        peak = max(hostile_rss(mode) for _ in range(args.runs))
        print(f"| {mode or 'well-behaved'} | {peak:.1f} |", flush=True)


def latencies(args):
    print("\nPing round trip through a forward (service-like cap, default pacing), ms:\n")
    print("| while | p50 | p99 |")
    print("|---|---|---|")
    for mode in ["idle", "same-forward", "other-session"]:
        runs = [latency(mode) for _ in range(args.runs)]
        p50 = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        label = {"idle": "nothing else runs",
                 "same-forward": "another connection of the same forward uploads bulk",
                 "other-session": "another session uploads bulk"}[mode]
        print(f"| {label} | {p50:.2f} | {p99:.2f} |", flush=True)


def stripes(args):
    print("\n8 parallel connections, 2 MiB each, through `rssm forward --sessions N` "
          "(service-like cap, per session), aggregate MB/s:\n")
    print("| direction | 1 session | 4 sessions | scaling | throttled |")
    print("|---|---|---|---|---|")
    for direction in ["upload", "download"]:
        one = [striping(1, direction) for _ in range(args.runs)]
        four = [striping(4, direction) for _ in range(args.runs)]
        m1 = statistics.median(r[0] for r in one)
        m4 = statistics.median(r[0] for r in four)
        thr = sum(r[1] for r in one + four)
        print(f"| {direction} | {m1:.2f} | {m4:.2f} | {m4 / m1:.2f}× | {thr} |", flush=True)


def many(args):
    runs = [many_connections() for _ in range(args.runs)]
    print(f"\n50 connections at once through one forward (limits off), 2 MiB each way each: "
          f"{statistics.median(r[0] for r in runs):.1f} s, rssm peak RSS "
          f"{max(r[1] for r in runs):.1f} MiB (largest of {args.runs} runs)")


def shell(args):
    starts = [shell_startup() for _ in range(args.runs)]
    print(f"\n`rssm shell` start to remote prompt: {statistics.median(starts) * 1000:.0f} ms "
          "(median; the simulated agent, like the real one, waits 1 s before its first read)")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`rssm cp` throughput under the service-like cap (1000 messages a second per session, the
agent's 1 ms pause per 1024-byte read), one session and `--sessions 4`, each way.

Usage:  python3 bench/cp.py [--runs 3] [--size-mib 16] [--skip-build]
        (or `python3 bench/run.py --only cp`)

Each run starts a fresh simulator, copies a SIZE MiB file of random bytes with the release
`rssm cp -v`, checks the copy, and records the wall time of the whole command, rssm's CPU
seconds (wait4's rusage) and peak RSS (VmHWM, polled), and the rate while data moved, which rssm reports at -v
("data moved for S s at R MB/s": from the first byte to the last, without the sessions'
start-up, the agent's 1 s wait before a terminal's first read, or the final checks). "% of cap"
compares that rate with the cap's raw rate, 1000 messages × 1024 bytes a second per session
(uploads are base64: at most 75 % of it).
"""

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kit import proc_cpu_rss  # noqa: E402
from run import TARGET, bin_path, build, shut_down, start_sim, throttled  # noqa: E402

CAP_RAW = 1000 * 1024  # bytes a second per session


def copy(env, args):
    """Runs `rssm cp ARGS`; returns (seconds, CPU seconds, peak RSS MiB, MB/s while data moved)."""
    start = time.monotonic()
    proc = subprocess.Popen([bin_path("rssm"), "-v", "cp", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Peak RSS by polling VmHWM: wait4's ru_maxrss would count the pages the child had as a
    # fork of this Python process, before it became rssm.
    peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            peak = max(peak, proc_cpu_rss(proc.pid)[1])
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"rssm cp {' '.join(args)} failed ({proc.returncode}): {err}")
    m = re.search(r"data moved for [0-9.]+ s at ([0-9.]+) MB/s", err)
    if not m:
        raise SystemExit(f"rssm cp -v did not report its rate: {err}")
    return elapsed, usage.ru_utime + usage.ru_stime, peak / 2**20, float(m.group(1))


def one_run(direction, sessions, size, work):
    """One capped copy of SIZE bytes: (whole-command MB/s, MB/s while data moved, CPU s, peak
    RSS MiB, throttled)."""
    log_path = f"/tmp/rssm-bench-cp-sim-{os.getpid()}.log"
    with open(log_path, "w") as log:
        sim, env = start_sim(True, log)
    try:
        src = os.path.join(work, "src.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(size))
        dst = os.path.join(work, "dst.bin")
        flags = ["--sessions", str(sessions)]
        if direction == "upload":
            elapsed, cpu, rss, steady = copy(env, flags + [src, f"{TARGET}:{dst}"])
        else:
            elapsed, cpu, rss, steady = copy(env, flags + [f"{TARGET}:{src}", dst])
        for p in (src, dst):
            with open(p, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            if p == src:
                want = digest
            elif digest != want:
                raise SystemExit(f"{direction}: the copy differs")
    finally:
        shut_down([], sim, settle=0.3)
    return size / elapsed / 1e6, steady, cpu, rss, throttled(log_path)


def rows(runs, size_mib):
    size = size_mib << 20
    print(f"\n`rssm cp` of a {size_mib} MiB file under the service-like cap, median of {runs} "
          "runs:\n")
    print("| direction | sessions | MB/s whole command | MB/s while data moved "
          "| % of cap (per session) | × one session (moving / whole) | rssm CPU s "
          "| rssm peak RSS MiB | throttled |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="rssm-bench-cp-") as work:
        for direction in ["upload", "download"]:
            base = None
            base_whole = None
            for sessions in [1, 4]:
                results = [one_run(direction, sessions, size, work) for _ in range(runs)]
                whole = statistics.median(r[0] for r in results)
                steady = statistics.median(r[1] for r in results)
                cpu = statistics.median(r[2] for r in results)
                rss = max(r[3] for r in results)
                thr = sum(r[4] for r in results)
                share = steady * 1e6 / (CAP_RAW * sessions) * 100
                base = base or steady
                base_whole = base_whole or whole
                print(f"| {direction} | {sessions} | {whole:.2f} | {steady:.2f} | {share:.1f} "
                      f"| {steady / base:.2f} / {whole / base_whole:.2f} | {cpu:.2f} | {rss:.1f} "
                      f"| {thr} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=16)
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    if not args.skip_build:
        build()
    rows(args.runs, args.size_mib)


if __name__ == "__main__":
    sys.exit(main())

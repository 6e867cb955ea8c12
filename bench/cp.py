#!/usr/bin/env python3
"""`rssm cp` throughput under the service-like cap (1000 messages a second per session, the
agent's 1 ms pause per 1024-byte read), one session and `--sessions 4`, each way.

Usage:  python3 bench/cp.py [--runs 3] [--size-mib 16] [--skip-build]
        (or `python3 bench/run.py --only cp`)

Each run starts a fresh simulator, copies a SIZE MiB file of random bytes with the release
`rssm cp`, checks the copy, and records the wall time of the whole command, rssm's CPU seconds
and peak RSS (wait4's rusage). A copy of an empty file, the same way, measures the fixed cost of
a copy (sessions to start, the agent's 1 s wait before a terminal's first read), which the
"steady" column leaves out. "% of cap" compares the steady rate with the cap's raw rate,
1000 messages × 1024 bytes a second per session (uploads are base64: at most 75 % of it).
"""

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import TARGET, bin_path, build, shut_down, start_sim, throttled  # noqa: E402

CAP_RAW = 1000 * 1024  # bytes a second per session


def copy(env, args):
    """Runs `rssm cp ARGS`; returns (seconds, CPU seconds, peak RSS MiB)."""
    start = time.monotonic()
    proc = subprocess.Popen([bin_path("rssm"), "-q", "cp", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"rssm cp {' '.join(args)} failed ({proc.returncode}): {err}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def one_run(direction, sessions, size, work):
    """One capped copy of SIZE bytes and one of an empty file: (whole-command MB/s, steady
    MB/s, CPU s, peak RSS MiB, throttled)."""
    log_path = f"/tmp/rssm-bench-cp-sim-{os.getpid()}.log"
    with open(log_path, "w") as log:
        sim, env = start_sim(True, log)
    try:
        src = os.path.join(work, "src.bin")
        empty = os.path.join(work, "empty.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(size))
        open(empty, "wb").close()
        dst = os.path.join(work, "dst.bin")
        flags = ["--sessions", str(sessions)]
        if direction == "upload":
            fixed = copy(env, flags + [empty, f"{TARGET}:{dst}"])[0]
            elapsed, cpu, rss = copy(env, flags + [src, f"{TARGET}:{dst}"])
        else:
            fixed = copy(env, flags + [f"{TARGET}:{empty}", dst])[0]
            elapsed, cpu, rss = copy(env, flags + [f"{TARGET}:{src}", dst])
        for p in (src, dst):
            with open(p, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            if p == src:
                want = digest
            elif digest != want:
                raise SystemExit(f"{direction}: the copy differs")
    finally:
        shut_down([], sim, settle=0.3)
    steady = size / max(elapsed - fixed, 1e-3) / 1e6
    return size / elapsed / 1e6, steady, cpu, rss, throttled(log_path)


def rows(runs, size_mib):
    size = size_mib << 20
    print(f"\n`rssm cp` of a {size_mib} MiB file under the service-like cap, median of {runs} "
          "runs:\n")
    print("| direction | sessions | MB/s whole command | MB/s steady | % of cap (per session) "
          "| × one session | rssm CPU s | rssm peak RSS MiB | throttled |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="rssm-bench-cp-") as work:
        for direction in ["upload", "download"]:
            base = None
            for sessions in [1, 4]:
                results = [one_run(direction, sessions, size, work) for _ in range(runs)]
                whole = statistics.median(r[0] for r in results)
                steady = statistics.median(r[1] for r in results)
                cpu = statistics.median(r[2] for r in results)
                rss = max(r[3] for r in results)
                thr = sum(r[4] for r in results)
                share = steady * 1e6 / (CAP_RAW * sessions) * 100
                base = base or whole
                print(f"| {direction} | {sessions} | {whole:.2f} | {steady:.2f} | {share:.1f} "
                      f"| {whole / base:.2f} | {cpu:.2f} | {rss:.1f} | {thr} |", flush=True)


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

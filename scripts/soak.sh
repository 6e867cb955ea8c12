#!/usr/bin/env bash
# Soak test, outside CI (it takes long): SIZE_MIB (default 256) each way through `rssm forward`
# over a simulator that drops 5% of the frames in each direction and kills the client's websocket
# ten times, then checks the echo's SHA-256 and prints how the session recovered.
#
#   scripts/soak.sh                       # the full run
#   SIZE_MIB=16 KILLS=3 scripts/soak.sh   # a quick one
#
# Knobs (environment): SIZE_MIB, DROP (0.05), KILLS (10), KILL_AFTER_MESSAGES (frames on one
# websocket before it is killed; default spreads the kills over the first half of the transfer),
# SEED, LIMIT_SECS (give up after this long; default 4 h), RSSM_ARGS (extra global options for
# rssm, e.g. `-vv`), CARGO_TARGET_DIR.
# Everything runs on loopback. Exit status 0 only if every byte came back intact.
#
# Expect it to be slow: the simulated agent repairs losses like the real one, head of line only,
# one retransmission per timeout, so at 5% loss the agent→client direction is bound by loss
# repair rather than by bandwidth.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib="${SIZE_MIB:-256}"
drop="${DROP:-0.05}"
kills="${KILLS:-10}"
seed="${SEED:-24301}"
limit="${LIMIT_SECS:-14400}"
# Per MiB each way: 1024 data messages, 1024 acknowledgements, and the same back.
kill_after="${KILL_AFTER_MESSAGES:-$(( size_mib * 4096 / 2 / (kills > 0 ? kills : 1) + 1000 ))}"
target="i-0123456789abcdef0"

echo "== building (release)"
cargo build --release --locked -q -p rssm -p rssm-sim
bin="${CARGO_TARGET_DIR:-target}/release"

work="$(mktemp -d "${TMPDIR:-/tmp}/rssm-soak.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== simulator: drop $drop each way, $kills websocket kills (every $kill_after frames), seed $seed"
kill_args=()
if [ "$kills" -gt 0 ]; then
  kill_args=(--kill-after-messages "$kill_after" --kill-times "$kills")
fi
"$bin/rssm-sim" serve --drop "$drop" "${kill_args[@]}" --seed "$seed" \
  --agent-read-pause-ms 0 --log-level info >"$work/sim.env" 2>"$work/sim.log" &
pids+=($!)
for _ in $(seq 100); do grep -q AWS_ENDPOINT_URL_SSM "$work/sim.env" 2>/dev/null && break; sleep 0.1; done
# shellcheck disable=SC1091
. "$work/sim.env"
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true

# A TCP echo server on loopback, and the client that pushes SIZE_MIB through the forward.
cat >"$work/echo.py" <<'PY'
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
def serve(c):
    with c:
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            c.sendall(b)
        c.shutdown(socket.SHUT_WR)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
cat >"$work/client.py" <<'PY'
import hashlib, os, socket, sys, threading, time
port, size = int(sys.argv[1]), int(sys.argv[2]) << 20
s = socket.create_connection(("127.0.0.1", port))
sent_hash = hashlib.sha256()
def send():
    rng = hashlib.sha256(b"rssm soak")
    left, block = size, rng.digest() * 2048   # 64 KiB blocks, varied per block below
    n = 0
    while left > 0:
        chunk = hashlib.sha256(n.to_bytes(8, "big")).digest() + block[32:]
        chunk = chunk[:min(len(chunk), left)]
        sent_hash.update(chunk)
        s.sendall(chunk)
        left -= len(chunk)
        n += 1
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
start = time.monotonic()
t.start()
got, got_hash, last = 0, hashlib.sha256(), start
while True:
    b = s.recv(1 << 16)
    if not b:
        break
    got += len(b)
    got_hash.update(b)
    now = time.monotonic()
    if now - last >= 30:
        print(f"   {got >> 20} MiB back after {now - start:.0f} s", flush=True)
        last = now
t.join()
elapsed = time.monotonic() - start
ok = got == size and got_hash.digest() == sent_hash.digest()
print(f"sent {size >> 20} MiB, got back {got / 2**20:.1f} MiB in {elapsed:.1f} s "
      f"({2 * got / 2**20 / max(elapsed, 1e-9):.2f} MiB/s both ways together)")
print(f"sha256 sent {sent_hash.hexdigest()}")
print(f"sha256 back {got_hash.hexdigest()}  {'OK' if ok else 'MISMATCH'}")
sys.exit(0 if ok else 1)
PY
python3 "$work/echo.py" >"$work/echo.port" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/echo.port" ] && break; sleep 0.1; done
echo_port="$(cat "$work/echo.port")"

echo "== rssm forward to the echo server (port $echo_port)"
# shellcheck disable=SC2086
"$bin/rssm" ${RSSM_ARGS:-} forward "$target" -L "0:localhost:$echo_port" 2>"$work/rssm.log" &
rssm_pid=$!
pids+=($rssm_pid)
local_port=""
for _ in $(seq 200); do
  local_port="$(sed -n 's/.*Forwarding 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/rssm.log" | head -1)"
  [ -n "$local_port" ] && break
  sleep 0.1
done
[ -n "$local_port" ] || { cat "$work/rssm.log"; echo "rssm did not start forwarding"; exit 1; }

echo "== $size_mib MiB each way through 127.0.0.1:$local_port (limit ${limit} s)"
status=0
timeout "$limit" python3 "$work/client.py" "$local_port" "$size_mib" || status=$?
[ "$status" = 124 ] && echo "gave up after ${limit} s"

kill -INT "$rssm_pid" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$rssm_pid" 2>/dev/null || break; sleep 0.1; done

echo "== recovery"
reconnects=$(grep -c 'reconnecting' "$work/rssm.log" || true)
echo "websocket losses: $reconnects; resumed: $(grep -c 'resumed after' "$work/rssm.log" || true);" \
  "new sessions: $(grep -c 'starting a new one' "$work/rssm.log" || true)"
grep -o 'resumed after [0-9.]* s' "$work/rssm.log" | awk '{ t = $3; n++; s += t; if (t > m) m = t }
  END { if (n) printf "resume time: mean %.2f s, max %.2f s over %d resumes\n", s / n, m, n }' \
  || true
sed -n 's/.*connection lost (\(.*\)); reconnecting.*/\1/p' "$work/rssm.log" | sort | uniq -c || true
echo "simulator (per session):"
grep 'session relay finished' "$work/sim.log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/.*session=/  session=/' || true
if grep -v -e 'Forwarding' -e 'reconnecting' -e 'resumed after' "$work/rssm.log" | grep -q .; then
  echo "other rssm messages (log kept in $work.rssm.log):"
  grep -v -e 'Forwarding' -e 'reconnecting' -e 'resumed after' "$work/rssm.log" | tail -20 | sed 's/^/  /'
  cp "$work/rssm.log" "$work.rssm.log"
fi
[ "$status" = 0 ] && echo "SOAK OK" || echo "SOAK FAILED"
exit "$status"

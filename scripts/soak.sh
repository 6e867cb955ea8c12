#!/usr/bin/env bash
# Soak test, outside CI (it takes long): SIZE_MIB (default 256) up and then down through
# `rssm forward`, over a simulator that drops 5% of the frames in each direction and kills the
# client's websocket ten times; checks SHA-256 both ways and prints how the session recovered.
#
#   scripts/soak.sh                          # the full run
#   SIZE_MIB=16 KILLS=3 scripts/soak.sh      # a quick one
#   MODE=echo scripts/soak.sh                # both directions at once, through an echo server
#
# Knobs (environment): SIZE_MIB, DROP (0.05), KILLS (10), KILL_AFTER_MESSAGES (frames on one
# websocket before it is killed; the default spreads the kills over the whole run), SEED,
# MODE (`updown`: upload to a hashing sink, then download from a source — the default; `echo`:
# both at once through an echo server), LIMIT_SECS (give up after this long; default 4 h),
# RSSM_ARGS (extra global options for rssm, e.g. `-vv` for the session's counters at the end),
# AGENT_READ_PAUSE_MS (the agent's pause per 1 KiB read; default 1, like the real agent),
# CARGO_TARGET_DIR. Everything runs on loopback. Exit status 0 only if every byte arrived intact.
#
# The agent and rssm both keep their real pacing (about 1000 messages of 1 KiB a second), so each
# direction moves about 1 MB/s: 256 MiB takes some 4.5 minutes each way. The simulated agent
# repairs losses like the real one, head of line only, one per round trip; at its real pace that
# keeps up with 5% loss. (Without the agent's pacing, `AGENT_READ_PAUSE_MS=0`, the agent sends
# faster than it can repair and the unrepaired losses pile up until rssm's reorder buffer
# overflows: the soak then crawls. The official agent has the same limit.)
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib="${SIZE_MIB:-256}"
drop="${DROP:-0.05}"
kills="${KILLS:-10}"
seed="${SEED:-24301}"
mode="${MODE:-updown}"
limit="${LIMIT_SECS:-14400}"
# Per MiB and direction: 1024 data messages and 1024 acknowledgements.
kill_after="${KILL_AFTER_MESSAGES:-$(( size_mib * 4096 / (kills + 1) ))}"
target="i-0123456789abcdef0"

echo "== building (release)"
cargo build --release --locked -q -p rssm -p rssm-sim
bin="${CARGO_TARGET_DIR:-target}/release"

work="$(mktemp -d "${TMPDIR:-/tmp}/rssm-soak.XXXXXX")"
pids=()
keep=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$keep" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "== simulator: drop $drop each way, $kills websocket kills (every $kill_after frames), seed $seed"
kill_args=()
if [ "$kills" -gt 0 ]; then
  kill_args=(--kill-after-messages "$kill_after" --kill-times "$kills")
fi
"$bin/rssm-sim" serve --drop "$drop" "${kill_args[@]}" --seed "$seed" \
  --agent-read-pause-ms "${AGENT_READ_PAUSE_MS:-1}" --log-level info >"$work/sim.env" 2>"$work/sim.log" &
pids+=($!)
for _ in $(seq 100); do grep -q AWS_ENDPOINT_URL_SSM "$work/sim.env" 2>/dev/null && break; sleep 0.1; done
# shellcheck disable=SC1091
. "$work/sim.env"
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true

# The TCP peer on the target's side, on loopback. Each connection starts with one line:
# `ECHO` (echo until EOF), `UP N` (read N bytes, answer their SHA-256 in hex) or `DOWN N` (send
# N bytes of the test pattern).
cat >"$work/pattern.py" <<'PY'
import hashlib
def blocks(size):
    """SIZE bytes of test data in 64 KiB blocks, each different."""
    base, n = hashlib.sha256(b"rssm soak").digest() * 2048, 0
    while size > 0:
        block = (hashlib.sha256(n.to_bytes(8, "big")).digest() + base[32:])[:size]
        yield block
        size -= len(block)
        n += 1
PY
cat >"$work/peer.py" <<'PY'
import hashlib, socket, threading
from pattern import blocks
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
def line(c):
    out = b""
    while not out.endswith(b"\n"):
        b = c.recv(1)
        if not b:
            raise EOFError
        out += b
    return out.decode().split()
def serve(c):
    with c:
        try:
            cmd = line(c)
        except EOFError:
            return
        if cmd[0] == "ECHO":
            while b := c.recv(1 << 16):
                c.sendall(b)
        elif cmd[0] == "UP":
            left, h = int(cmd[1]), hashlib.sha256()
            while left > 0 and (b := c.recv(min(1 << 16, left))):
                h.update(b)
                left -= len(b)
            c.sendall(h.hexdigest().encode() + b"\n")
        elif cmd[0] == "DOWN":
            for b in blocks(int(cmd[1])):
                c.sendall(b)
        c.shutdown(socket.SHUT_WR)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
cat >"$work/client.py" <<'PY'
import hashlib, socket, sys, threading, time
from pattern import blocks
port, size, mode = int(sys.argv[1]), int(sys.argv[2]) << 20, sys.argv[3]
want = hashlib.sha256()
for b in blocks(size):
    want.update(b)
want = want.hexdigest()

def progress(what, start):
    last = [start]
    def tick(n):
        now = time.monotonic()
        if now - last[0] >= 30:
            print(f"   {what}: {n >> 20} MiB after {now - start:.0f} s", flush=True)
            last[0] = now
    return tick

def send_all(s, what, start):
    tick, sent = progress(what, start), 0
    for b in blocks(size):
        s.sendall(b)
        sent += len(b)
        tick(sent)

def receive_all(s, what, start):
    tick, got, h = progress(what, start), 0, hashlib.sha256()
    while b := s.recv(1 << 16):
        got += len(b)
        h.update(b)
        tick(got)
    return got, h.hexdigest()

def report(what, got, digest, start):
    elapsed = time.monotonic() - start
    ok = got == size and digest == want
    print(f"{what}: {got / 2**20:.1f} of {size >> 20} MiB in {elapsed:.1f} s "
          f"({got / 2**20 / max(elapsed, 1e-9):.3f} MiB/s), sha256 {digest[:16]}… "
          f"{'OK' if ok else 'MISMATCH (want ' + want[:16] + '…)'}", flush=True)
    return ok

ok = True
if mode == "echo":
    s, start = socket.create_connection(("127.0.0.1", port)), time.monotonic()
    s.sendall(b"ECHO\n")
    def up():
        send_all(s, "sent", start)
        s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=up)
    t.start()
    got, digest = receive_all(s, "echoed", start)
    t.join()
    ok = report("echo", got, digest, start)
else:
    s, start = socket.create_connection(("127.0.0.1", port)), time.monotonic()
    s.sendall(f"UP {size}\n".encode())
    send_all(s, "up", start)
    answer = b""
    while not answer.endswith(b"\n") and (b := s.recv(100)):
        answer += b
    ok = report("up", size if answer else 0, answer.decode().strip(), start)
    s.close()
    s, start = socket.create_connection(("127.0.0.1", port)), time.monotonic()
    s.sendall(f"DOWN {size}\n".encode())
    got, digest = receive_all(s, "down", start)
    ok = report("down", got, digest, start) and ok
sys.exit(0 if ok else 1)
PY
(cd "$work" && exec python3 peer.py >peer.port) &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/peer.port" ] && break; sleep 0.1; done
peer_port="$(cat "$work/peer.port")"

echo "== rssm forward to the test peer (port $peer_port)"
# shellcheck disable=SC2086
"$bin/rssm" ${RSSM_ARGS:-} forward "$target" -L "0:localhost:$peer_port" 2>"$work/rssm.log" &
rssm_pid=$!
pids+=($rssm_pid)
local_port=""
for _ in $(seq 200); do
  local_port="$(sed -n 's/.*Forwarding 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/rssm.log" | head -1)"
  [ -n "$local_port" ] && break
  sleep 0.1
done
[ -n "$local_port" ] || { cat "$work/rssm.log"; echo "rssm did not start forwarding"; exit 1; }

echo "== $size_mib MiB, $mode, through 127.0.0.1:$local_port (limit ${limit} s)"
status=0
started=$SECONDS
(cd "$work" && exec timeout "$limit" python3 client.py "$local_port" "$size_mib" "$mode") || status=$?
[ "$status" = 124 ] && echo "gave up after ${limit} s"
echo "total: $(( SECONDS - started )) s"

kill -INT "$rssm_pid" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$rssm_pid" 2>/dev/null || break; sleep 0.1; done

echo "== recovery"
echo "websocket losses: $(grep -c 'reconnecting' "$work/rssm.log" || true);" \
  "resumed: $(grep -c 'resumed after' "$work/rssm.log" || true);" \
  "new sessions: $(grep -c 'starting a new one' "$work/rssm.log" || true)"
grep -o 'resumed after [0-9.]* s' "$work/rssm.log" | awk '{ t = $3; n++; s += t; if (t > m) m = t }
  END { if (n) printf "resume time: mean %.2f s, max %.2f s over %d resumes\n", s / n, m, n }' \
  || true
echo "why the websocket was given up:"
sed -n 's/.*connection lost (\(.*\)); reconnecting.*/\1/p' "$work/rssm.log" | sort | uniq -c || true
echo "simulator (per session):"
sed -e 's/\x1b\[[0-9;]*m//g' -n -e 's/.*session relay finished.*session=\([^ ]*\) \(.*\)/  \1 \2/p' \
  "$work/sim.log" || true
grep -o 'stats=Stats.*' "$work/rssm.log" | sed 's/^/rssm session /' || true
if grep -v -e 'Forwarding' -e 'reconnecting' -e 'resumed after' -e 'DEBUG' -e 'INFO' \
  "$work/rssm.log" | grep -q .; then
  echo "other rssm messages:"
  grep -v -e 'Forwarding' -e 'reconnecting' -e 'resumed after' -e 'DEBUG' -e 'INFO' \
    "$work/rssm.log" | tail -20 | sed 's/^/  /'
fi
kill -0 "${pids[0]}" 2>/dev/null || echo "the simulator is gone (see sim.log)"
if [ "$status" = 0 ]; then echo "SOAK OK"; else echo "SOAK FAILED"; keep=1; fi
exit "$status"

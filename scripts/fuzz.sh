#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for a fixed time each, outside CI (it needs a nightly
# toolchain and takes minutes; see fuzz/README.md), and prints one result line per target.
#
#   scripts/fuzz.sh          # 60 s per target
#   scripts/fuzz.sh 600      # 10 minutes per target
#
# Environment: FUZZ_TARGET_DIR (build directory, default fuzz/target), FUZZ_JOBS (parallel
# fuzzing processes per target, default 1). Exit status 0 when no target crashed; a crash leaves
# its input in fuzz/artifacts/TARGET/ and the reproducing command in the log above the summary.
set -euo pipefail
cd "$(dirname "$0")/.."

budget="${1:-60}"
target_dir="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
jobs="${FUZZ_JOBS:-1}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs cargo-fuzz: cargo install cargo-fuzz" >&2
  exit 2
fi

logs="$(mktemp -d "${TMPDIR:-/tmp}/rssm-fuzz.XXXXXX")"
summary=()
failed=0
for target in $(cargo +nightly fuzz list); do
  echo "== $target: ${budget} s"
  log="$logs/$target.log"
  status=0
  cargo +nightly fuzz run "$target" --target-dir "$target_dir" --jobs "$jobs" -- \
    -max_total_time="$budget" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{ s += $1 } END { print s + 0 }')
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | awk '{ s += $1 } END { print s + 0 }')
  final=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$final")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$final")
  if [ "$status" = 0 ]; then
    result="ok"
  else
    result="CRASH (exit $status; log $log)"
    failed=1
    grep -E 'panicked|ERROR|SUMMARY|Test unit written|reproduce' "$log" | head -10 || true
  fi
  summary+=("$(printf '%-8s %-6s %12s runs %8s/s  cov %-6s corpus %-12s %s' \
    "$target" "${budget}s" "$runs" "$rate" "${cov:-?}" "${corp:-?}" "$result")")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
[ "$failed" = 0 ] && rm -rf "$logs"
exit "$failed"

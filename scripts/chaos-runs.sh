#!/usr/bin/env bash
# The chaos run (test/chaos.test.ts) N times in a row (default 10), each with a fresh seed; stops at the first
# failure, whose seed the test printed (CHAOS_SEED=N replays its choices). Usage: bash scripts/chaos-runs.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
for i in $(seq 1 "$runs"); do
  log=$(mktemp)
  if node --import tsx --test --test-timeout=600000 test/chaos.test.ts >"$log" 2>&1; then
    echo "run $i of $runs: passed ($(grep -m1 -o 'chaos seed [0-9]*' "$log"); $(grep -m1 -o 'job over in [0-9.]* s' "$log"))"
    rm -f "$log"
  else
    echo "run $i of $runs: FAILED, log in $log"
    grep -m1 'chaos seed' "$log"
    exit 1
  fi
done
echo "$runs of $runs chaos runs passed"

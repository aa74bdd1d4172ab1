#!/usr/bin/env bash
# A chaos test N times in a row (default 10), each with a fresh seed; stops at the first failure, whose seed the test
# printed (CHAOS_SEED=N replays its choices).
#   bash scripts/chaos-runs.sh [N] [TEST]     TEST: test/chaos.test.ts (default) or test/testbed-chaos.test.ts (root)
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
file=${2:-test/chaos.test.ts}
for i in $(seq 1 "$runs"); do
  log=$(mktemp)
  started=$(date +%s)
  if node --import tsx --test --test-timeout=600000 "$file" >"$log" 2>&1; then
    echo "run $i of $runs: passed in $(( $(date +%s) - started )) s ($(grep -m1 -o 'chaos seed [0-9]*' "$log"))"
    rm -f "$log"
  else
    echo "run $i of $runs: FAILED, log in $log"
    grep -m1 'chaos seed' "$log"
    exit 1
  fi
done
echo "$runs of $runs runs of $file passed"

#!/usr/bin/env bash
# The long runs that CI (scripts/test.sh) leaves out or shortens, for a nightly run and before
# the figures in BENCHMARKS.md are refreshed:
#   - tests/e2e/tiers_crash.test.mjs with 50 kill -9 rounds (CI: 10, PREFIXD_CRASH_RUNS)
#   - tests/e2e/peer_bench.test.mjs, llama.cpp beside prefixd (CI names it skipped)
#   - the full workload benchmark, scripts/bench-serve.sh (CI runs its --quick smoke test)
#   scripts/soak.sh [--no-bench]
# Expects build/ built (scripts/build.sh) and Node.js 20+ (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
t0=$SECONDS
PREFIXD_SOAK=1 PREFIXD_CRASH_RUNS="${PREFIXD_CRASH_RUNS:-50}" \
  bash tests/e2e/run.sh ./tiers_crash.test.mjs ./peer_bench.test.mjs
echo "soak: e2e soaks took $((SECONDS - t0)) s"
if [ "${1:-}" != "--no-bench" ]; then
  t1=$SECONDS
  bash scripts/bench-serve.sh
  echo "soak: bench-serve took $((SECONDS - t1)) s"
fi

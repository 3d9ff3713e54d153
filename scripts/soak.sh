#!/usr/bin/env bash
# The long runs that CI (scripts/test.sh) leaves out or shortens, for a nightly run and before
# the figures in BENCHMARKS.md are refreshed:
#   - tests/e2e/tiers_crash.test.mjs with 50 kill -9 rounds (CI: 10, PREFIXD_CRASH_RUNS)
#   - tests/e2e/peer_bench.test.mjs, the native llama.cpp beside prefixd (CI names it skipped;
#     it needs the peer built by scripts/build-peer.sh and skips, saying so, without it)
#   - app/request_log_replay_test's disk-tier variant, 10 runs (CI: 1)
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
# The request log's replay with a disk tier, ten more runs of five seeds (CI runs one: the
# interleaving is the threads' timing); it reports, it does not stop the soak.
t2=$SECONDS
replay_fails=0
for _ in $(seq 1 10); do
  build/app/request_log_replay_test --gtest_filter='*DiskTier*' --gtest_brief=1 ||
    replay_fails=$((replay_fails + 1))
done
echo "soak: request log replay with a disk tier: $replay_fails of 10 runs parted from the server ($((SECONDS - t2)) s)"
if [ "${1:-}" != "--no-bench" ]; then
  t1=$SECONDS
  bash scripts/bench-serve.sh
  echo "soak: bench-serve took $((SECONDS - t1)) s"
fi

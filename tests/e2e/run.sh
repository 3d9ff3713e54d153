#!/usr/bin/env bash
# End-to-end tests: starts real `prefixd serve` processes on 127.0.0.1 and talks to them with
# the official `openai` and `@anthropic-ai/sdk` npm packages (pinned in package-lock.json) and fetch.
#   PREFIXD_BIN         the binary (default: build/app/prefixd under the repository root)
#   PREFIXD_TEST_MODEL  the model (default: ../shared/models/stories260K.gguf beside the checkout)
#   PREFIXD_TAP         also write node's TAP report here (scripts/test.sh tallies it)
#   PREFIXD_CRASH_RUNS  kill -9 rounds in tiers_crash.test.mjs (default 50; CI 10, soak 50)
# Node.js 20+ missing, or the model missing, is a failure: the suite must not pass unrun.
# Installs node_modules with `npm ci` only when it is missing or older than the lock file.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "e2e: node/npm not found: install Node.js 20+ (scripts/setup.sh does)" >&2
  exit 1
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "e2e: node $(node --version) is too old: Node.js 20+ is required (scripts/setup.sh)" >&2
  exit 1
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "e2e: installing the test dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

export PREFIXD_BIN="${PREFIXD_BIN:-$ROOT/build/app/prefixd}"
export PREFIXD_TEST_MODEL="${PREFIXD_TEST_MODEL:-$ROOT/../shared/models/stories260K.gguf}"
if [ ! -x "$PREFIXD_BIN" ]; then
  echo "e2e: $PREFIXD_BIN is not built (run scripts/test.sh, or set PREFIXD_BIN)" >&2
  exit 1
fi
if [ ! -f "$PREFIXD_TEST_MODEL" ]; then
  echo "e2e: $PREFIXD_TEST_MODEL is missing (set PREFIXD_TEST_MODEL)" >&2
  exit 1
fi

# One test file at a time (each starts its own servers); every test carries its own timeout.
reporters=(--test-reporter=spec --test-reporter-destination=stdout)
if [ -n "${PREFIXD_TAP:-}" ]; then
  reporters+=(--test-reporter=tap --test-reporter-destination="$PREFIXD_TAP")
fi
files=(./*.test.mjs)
if [ $# -gt 0 ]; then files=("$@"); fi
exec node --test --test-concurrency=1 "${reporters[@]}" "${files[@]}"

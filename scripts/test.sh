#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, runs every unit and end-to-end test,
# then the sanitizer build (ASan + UBSan) of the tests and a bounded fuzz run of the GGUF
# reader. Set PREFIXD_QUICK=1 to skip the sanitizer build and the fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=$(nproc)
# Every runner's results are tallied into one closing line: "N passed, N failed".
PASSED=0
FAILED=0
tally_ctest() {  # tally_ctest LOG: adds ctest's "N% tests passed, F tests failed out of T"
  local line
  line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$1" | tail -n 1)
  local failed total
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
  total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
  PASSED=$((PASSED + total - failed))
  FAILED=$((FAILED + failed))
}
LOGS=$(mktemp -d)

echo "== build (RelWithDebInfo)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j"$JOBS"
echo "== tests"
ctest --test-dir build --output-on-failure -j"$JOBS" | tee "$LOGS/ctest.log"
tally_ctest "$LOGS/ctest.log"
echo "== end-to-end tests (tests/e2e; skipped when node is missing)"
bash tests/e2e/run.sh | tee "$LOGS/e2e.log"
E2E_PASS=$(grep -E "^# pass [0-9]+" "$LOGS/e2e.log" | awk '{print $3}' | tail -n 1)
E2E_FAIL=$(grep -E "^# fail [0-9]+" "$LOGS/e2e.log" | awk '{print $3}' | tail -n 1)
PASSED=$((PASSED + ${E2E_PASS:-0}))
FAILED=$((FAILED + ${E2E_FAIL:-0}))

if [ "${PREFIXD_QUICK:-0}" != "1" ]; then
  echo "== sanitizer build (address,undefined)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPREFIXD_BENCH=OFF \
    -DPREFIXD_SANITIZE=address,undefined -DCMAKE_CXX_FLAGS="-O1" >/dev/null
  ninja -C build-asan -j"$JOBS"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS" | tee "$LOGS/ctest-asan.log"
  tally_ctest "$LOGS/ctest-asan.log"
  echo "== thread sanitizer build of the concurrent parts"
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPREFIXD_BENCH=OFF \
    -DPREFIXD_SANITIZE=thread -DCMAKE_CXX_FLAGS="-O1" >/dev/null
  TSAN_TESTS="base_test engine_service_test http_server_test"
  ninja -C build-tsan -j"$JOBS" $TSAN_TESTS
  for t in $TSAN_TESTS; do
    bin=$(find build-tsan -name "$t" -type f -perm -u+x | head -n 1)
    TSAN_OPTIONS="halt_on_error=1" "$bin" --gtest_brief=1
    PASSED=$((PASSED + 1))
  done
  if [ -f scripts/fuzz.sh ]; then
    echo "== fuzz the GGUF reader (${PREFIXD_FUZZ_SECONDS:-60} s)"
    bash scripts/fuzz.sh "${PREFIXD_FUZZ_SECONDS:-60}"
  fi
fi
if [ "${PREFIXD_QUICK:-0}" = "1" ]; then
  echo "== all tests passed (PREFIXD_QUICK=1: sanitizer builds and the fuzzer were skipped)"
else
  echo "== all tests passed (unit, end-to-end, ASan+UBSan, TSan; the fuzzer found nothing)"
fi
echo "$PASSED passed, $FAILED failed"

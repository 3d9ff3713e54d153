#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, runs every unit and end-to-end test,
# then the sanitizer build (ASan + UBSan) of the tests and a bounded fuzz run of the GGUF
# reader. Set PREFIXD_QUICK=1 to skip the sanitizer build and the fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=$(nproc)

echo "== build (RelWithDebInfo)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j"$JOBS"
echo "== tests"
ctest --test-dir build --output-on-failure -j"$JOBS"
echo "== end-to-end tests (tests/e2e; skipped when node is missing)"
bash tests/e2e/run.sh

if [ "${PREFIXD_QUICK:-0}" != "1" ]; then
  echo "== sanitizer build (address,undefined)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPREFIXD_BENCH=OFF \
    -DPREFIXD_SANITIZE=address,undefined -DCMAKE_CXX_FLAGS="-O1" >/dev/null
  ninja -C build-asan -j"$JOBS"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS"
  echo "== thread sanitizer build of the concurrent parts"
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPREFIXD_BENCH=OFF \
    -DPREFIXD_SANITIZE=thread -DCMAKE_CXX_FLAGS="-O1" >/dev/null
  TSAN_TESTS="base_test engine_service_test http_server_test"
  ninja -C build-tsan -j"$JOBS" $TSAN_TESTS
  for t in $TSAN_TESTS; do
    bin=$(find build-tsan -name "$t" -type f -perm -u+x | head -n 1)
    TSAN_OPTIONS="halt_on_error=1" "$bin" --gtest_brief=1
  done
  if [ -f scripts/fuzz.sh ]; then
    echo "== fuzz the GGUF reader (${PREFIXD_FUZZ_SECONDS:-60} s)"
    bash scripts/fuzz.sh "${PREFIXD_FUZZ_SECONDS:-60}"
  fi
fi
echo "== all tests passed"

#!/usr/bin/env bash
# The whole test suite (CI runs it through .ci/run): installs what it needs, builds, runs every
# unit test (ctest), the end-to-end tests (node --test), the ASan+UBSan build of the unit tests,
# the TSan build of the concurrent parts, the layering check and a bounded fuzz run.
#
# It cannot overstate: a suite that should run and did not (Node missing or too old, a
# sanitizer build that failed) is a failure; results are tallied from structured output (ctest's
# JUnit file, each gtest binary's XML, node's TAP) by scripts/tally.mjs, every skip is named with
# its reason, and the last line is exactly "N passed, N failed, N skipped". Before it, a table
# of the time each stage took.
#
#   PREFIXD_QUICK=1            skip the sanitizer builds and the fuzzer (they are then listed
#                              as skipped, not passed)
#   PREFIXD_FUZZ_SECONDS=60    the fuzz run's length, split between the GGUF and HTTP targets
#   PREFIXD_CRASH_RUNS=10      kill -9 rounds of tests/e2e/tiers_crash (scripts/soak.sh: 50)
#   PREFIXD_TEST_BENCH=OFF     ON also builds the micro-benchmarks (bench/) in build/
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
JOBS=$(nproc)
# ccache (CMakeLists.txt uses it when installed): paths relative to the checkout, so a fresh
# clone elsewhere (CI's) hits what an earlier build of the same sources left in the cache.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
LOGS=$(mktemp -d -t prefixd-test.XXXXXX)
RESULTS="$LOGS/results.jsonl"
: >"$RESULTS"
STAGES=()
T0=$SECONDS

stage_begin() { STAGE_NAME=$1; STAGE_T=$SECONDS; echo "== $1"; }
stage_end() { STAGES+=("$(printf '%-44s %4ds' "$STAGE_NAME" $((SECONDS - STAGE_T)))"); }
timings() {
  echo "== stage times"
  for s in "${STAGES[@]}"; do echo "   $s"; done
  echo "   $(printf '%-44s %4ds' total $((SECONDS - T0)))"
}
add() { node scripts/tally.mjs add "$1" "$2" "$3" "${4:-}" "$RESULTS"; }  # SUITE NAME STATUS REASON
finish() {
  timings
  node scripts/tally.mjs summary "$RESULTS"
  exit $?
}
die() {  # a stage that everything after it needs failed: report what ran, then stop
  echo "test.sh: $*" >&2
  timings
  echo "== stopped: $*"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
}

# run_ctest SUITE BUILD_DIR [ctest args...]: runs ctest with JUnit output and every gtest binary
# writing its XML, then tallies both.
run_ctest() {
  local suite=$1 dir=$2
  shift 2
  local junit="$LOGS/$suite.junit.xml" gx="$LOGS/$suite-gtest"
  mkdir -p "$gx"
  GTEST_OUTPUT="xml:$gx/" ctest --test-dir "$dir" --output-on-failure -j"$JOBS" \
    --output-junit "$junit" "$@" 2>&1 | tee "$LOGS/$suite.log"
  node scripts/tally.mjs ctest "$suite" "$junit" "$gx" "$RESULTS"
}

stage_begin "setup (scripts/setup.sh)"
bash scripts/setup.sh || die "scripts/setup.sh failed"
stage_end
# Node 20+ runs the end-to-end tests and this script's tally: without it nothing can be counted.
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$NODE_MAJOR" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
  die "Node.js 20+ and npm are required (found node major ${NODE_MAJOR}; scripts/setup.sh should have installed them)"
fi

# -g1 (line tables, no variable info) instead of RelWithDebInfo's -g: the same backtraces for
# a failing test at a good part less compile time on CI's two cores.
stage_begin "build (RelWithDebInfo)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DPREFIXD_BENCH="${PREFIXD_TEST_BENCH:-OFF}" >"$LOGS/cmake.log" 2>&1 ||
  { cat "$LOGS/cmake.log"; die "cmake (build/) failed"; }
ninja -C build -j"$JOBS" || die "the build (build/) failed"
stage_end

stage_begin "unit tests (ctest)"
run_ctest unit build
stage_end

stage_begin "end-to-end tests (tests/e2e, node --test)"
if PREFIXD_TAP="$LOGS/e2e.tap" PREFIXD_CRASH_RUNS="${PREFIXD_CRASH_RUNS:-10}" \
  bash tests/e2e/run.sh 2>&1 | tee "$LOGS/e2e.log"; then :; fi
node scripts/tally.mjs tap e2e "$LOGS/e2e.tap" "$RESULTS"
stage_end

if [ "${PREFIXD_QUICK:-0}" = "1" ]; then
  for s in asan tsan; do add "$s" "$s" skip "PREFIXD_QUICK=1"; done
  for f in gguf_fuzz http_request_fuzz; do add fuzz "$f" skip "PREFIXD_QUICK=1"; done
else
  stage_begin "ASan+UBSan build"
  ok=1
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPREFIXD_BENCH=OFF \
    -DPREFIXD_SANITIZE=address,undefined -DCMAKE_CXX_FLAGS="-O1" -DCMAKE_CXX_FLAGS_DEBUG="-g1" \
    >"$LOGS/cmake-asan.log" 2>&1 || { cat "$LOGS/cmake-asan.log"; ok=0; }
  [ $ok = 1 ] && { ninja -C build-asan -j"$JOBS" || ok=0; }
  stage_end
  if [ $ok = 1 ]; then
    stage_begin "ASan+UBSan unit tests"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_ctest asan build-asan
    stage_end
  else
    add asan "ASan+UBSan build" fail "the sanitizer build could not be made: see the log"
  fi

  # The threads live in the tier controller (its writers and reader), the stores, the engine
  # service and the HTTP server: TSan builds just those tests. The stores and the fault file
  # system lock with prefixd::Mutex (base/mutex.h, a std::mutex TSan sees), not absl::Mutex:
  # Debian's libabsl is not TSan-built, so TSan could not see absl's locks. The eight took 41-47 s
  # (ctest -j2, 2 loaded cores, 2026-12-06): tiered_cache_test (the test model's compute,
  # about 4x the plain build) and disk_store_test (fsync-bound, as long in the plain build) are
  # most of it. A test that hangs is killed after 300 s, not the default 600.
  TSAN_TESTS=(base_test host_store_test disk_store_test redis_store_test tier_controller_test
    copy_offload_test tiered_cache_test engine_service_test http_server_test http_transport_test)
  stage_begin "TSan build (${#TSAN_TESTS[@]} tests)"
  ok=1
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPREFIXD_BENCH=OFF \
    -DPREFIXD_SANITIZE=thread -DCMAKE_CXX_FLAGS="-O1" -DCMAKE_CXX_FLAGS_DEBUG="-g1" \
    -DPREFIXD_TEST_TIMEOUT=300 \
    >"$LOGS/cmake-tsan.log" 2>&1 || { cat "$LOGS/cmake-tsan.log"; ok=0; }
  [ $ok = 1 ] && { ninja -C build-tsan -j"$JOBS" "${TSAN_TESTS[@]}" || ok=0; }
  stage_end
  if [ $ok = 1 ]; then
    stage_begin "TSan tests"
    regex="^($(IFS='|'; echo "${TSAN_TESTS[*]}"))\$"
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" run_ctest tsan build-tsan -R "$regex"
    stage_end
  else
    add tsan "TSan build" fail "the thread-sanitizer build could not be made: see the log"
  fi

  # One build, the time split between the two targets; a row for each (fuzz.sh prints
  # "fuzz: TARGET SECONDS s: pass|fail" per target it ran).
  stage_begin "fuzz: GGUF reader, HTTP requests (${PREFIXD_FUZZ_SECONDS:-60} s)"
  if bash scripts/fuzz.sh "${PREFIXD_FUZZ_SECONDS:-60}" gguf http >"$LOGS/fuzz.log" 2>&1; then
    tail -n 5 "$LOGS/fuzz.log"
  else
    tail -n 40 "$LOGS/fuzz.log"
  fi
  for t in gguf:gguf_fuzz http:http_request_fuzz; do
    line=$(grep "^fuzz: ${t%%:*} " "$LOGS/fuzz.log" | tail -n 1 || true)
    secs=$(echo "$line" | awk '{print $3}')
    if [[ "$line" == *": pass" ]]; then
      add fuzz "${t#*:} ${secs} s" pass
    elif [ -n "$line" ]; then
      add fuzz "${t#*:} ${secs} s" fail "a crash, leak or timeout: see the log and build-fuzz/artifacts/${t%%:*}/"
    else
      add fuzz "${t#*:}" fail "did not run (the fuzz build failed?): see the log"
    fi
  done
  stage_end
fi

echo "logs: $LOGS"
finish

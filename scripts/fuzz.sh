#!/usr/bin/env bash
# Fuzzes with libFuzzer, ASan and UBSan for SECONDS in all (default 60), split evenly between
# the targets named (default: both):
#
#   scripts/fuzz.sh [SECONDS] [gguf] [http]
#
#   gguf  gguf_fuzz: the GGUF reader. Seeds: ../shared/models/*.gguf and a few small
#         writer-made files.
#   http  http_request_fuzz: raw HTTP/1.1 requests through Beast's parser and the server's
#         router and routes, over stories260K (../shared/models). Seeds: fuzz/corpus/http/.
#
# Builds with clang in build-fuzz/ (only the fuzz targets and what they link). Runs every
# target named even when one fails, prints "fuzz: TARGET SECONDS s: pass|fail" per target, and
# exits non-zero when any found a crash, leak, timeout or out-of-memory (or did not build); the
# input that triggered it is saved under build-fuzz/artifacts/TARGET/.
set -euo pipefail

seconds="${1:-60}"
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then targets=(gguf http); fi
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"

binaries=()
for t in "${targets[@]}"; do
  case "$t" in
    gguf) binaries+=(gguf_fuzz gguf_fuzz_seeds) ;;
    http) binaries+=(http_request_fuzz) ;;
    *) echo "fuzz.sh: unknown target '$t' (gguf, http)" >&2; exit 2 ;;
  esac
done

# -O1 -g1 as the sanitizer builds of scripts/test.sh: the whole server is compiled for the HTTP
# target, and on CI's two cores -O2 -g cost about a third more build time than the fuzzing gains.
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS="-O1" -DCMAKE_CXX_FLAGS_DEBUG="-g1" \
  -DPREFIXD_FUZZ=ON -DPREFIXD_TESTS=OFF -DPREFIXD_BENCH=OFF \
  -DPREFIXD_SANITIZE=address,undefined >/dev/null
ninja -C "$build" -j2 "${binaries[@]}"

# The first targets get SECONDS / N each, the last what is left (at least 1 s each).
each=$((seconds / ${#targets[@]}))
if [[ $each -lt 1 ]]; then each=1; fi
left=$seconds

run_gguf() {
  local corpus="$build/corpus/gguf"
  mkdir -p "$corpus"
  for model in "$root"/../shared/models/*.gguf; do
    if [[ -f "$model" ]]; then cp -f "$model" "$corpus/"; fi
  done
  "$build/fuzz/gguf_fuzz_seeds" "$corpus"
  # The real models are ~1-2 MB; let mutations grow a little past the largest seed.
  "$build/fuzz/gguf_fuzz" "$corpus" \
    -max_total_time="$1" -rss_limit_mb=2048 -max_len=4194304 -timeout=30 \
    -artifact_prefix="$2/" -print_final_stats=1
}

run_http() {
  # The committed seeds stay as they are; what the fuzzer adds goes to build-fuzz/.
  local corpus="$build/corpus/http"
  mkdir -p "$corpus"
  # Requests are small; 64 KiB lets several pipelined ones and a body or two fit. Leaks are
  # checked per input (the server's own state lives for the process, so is not one).
  "$build/fuzz/http_request_fuzz" "$corpus" "$root/fuzz/corpus/http" \
    -max_total_time="$1" -rss_limit_mb=4096 -max_len=65536 -timeout=30 \
    -artifact_prefix="$2/" -print_final_stats=1
}

failed=0
summary=()
for i in "${!targets[@]}"; do
  t="${targets[$i]}"
  if [[ $i -eq $((${#targets[@]} - 1)) && $left -gt $each ]]; then s=$left; else s=$each; fi
  left=$((left - s))
  artifacts="$build/artifacts/$t"
  mkdir -p "$artifacts"
  echo "== fuzz: $t for $s s"
  if "run_$t" "$s" "$artifacts"; then
    summary+=("fuzz: ${t} ${s} s: pass")
  else
    summary+=("fuzz: ${t} ${s} s: fail (artifacts in $artifacts)")
    failed=1
  fi
done
printf '%s\n' "${summary[@]}"
exit $failed

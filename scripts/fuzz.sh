#!/usr/bin/env bash
# Fuzzes the GGUF reader for SECONDS (default 60) with libFuzzer, ASan and UBSan.
#
#   scripts/fuzz.sh [SECONDS]
#
# Builds with clang in build-fuzz/ (only the fuzz targets and what they link), seeds the corpus
# with ../shared/models/*.gguf and a few small writer-made files, and runs gguf_fuzz. Exits
# non-zero when the fuzzer finds a crash, leak, timeout or out-of-memory; the input that
# triggered it is saved under build-fuzz/artifacts/.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPREFIXD_FUZZ=ON -DPREFIXD_TESTS=OFF -DPREFIXD_BENCH=OFF \
  -DPREFIXD_SANITIZE=address,undefined >/dev/null
ninja -C "$build" -j2 gguf_fuzz gguf_fuzz_seeds

corpus="$build/corpus/gguf"
artifacts="$build/artifacts"
mkdir -p "$corpus" "$artifacts"
for model in "$root"/../shared/models/*.gguf; do
  if [[ -f "$model" ]]; then cp -f "$model" "$corpus/"; fi
done
"$build/fuzz/gguf_fuzz_seeds" "$corpus"

# The real models are ~1-2 MB; let mutations grow a little past the largest seed.
"$build/fuzz/gguf_fuzz" "$corpus" \
  -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4194304 -timeout=30 \
  -artifact_prefix="$artifacts/" -print_final_stats=1

#!/usr/bin/env bash
# Builds and runs dequant_bits.cc: prefixd's dequantisers against ggml's, bit for bit, on
# random blocks of every quantised type both read. Needs prefixd's build (build/, the
# prefixd_compute and prefixd_base libraries) and the native peer (scripts/build-peer.sh; its
# static libggml-base.a beside the bin folder that `build-peer.sh --print` names).
#   bench/peer/dequant_bits.sh [BUILD_DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
PEER_BIN=${PREFIXD_PEER_BIN:-$("$ROOT/scripts/build-peer.sh" --print)}
GGML=$(cd "$PEER_BIN/.." && pwd)/ggml/src/libggml-base.a
for f in "$BUILD/src/compute/libprefixd_compute.a" "$GGML"; do
  [ -f "$f" ] || { echo "dequant_bits: $f is missing (build prefixd_compute / the peer first)" >&2; exit 1; }
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# libggml-base's quantisers use OpenMP for their lookup tables: -fopenmp links its runtime.
c++ -std=c++20 -O1 -I"$ROOT/src" "$ROOT/bench/peer/dequant_bits.cc" \
  "$BUILD/src/compute/libprefixd_compute.a" $(find "$BUILD/src/model" "$BUILD/src/base" -name 'lib*.a') \
  "$GGML" -fopenmp -lpthread -lm -o "$OUT/dequant_bits"
"$OUT/dequant_bits"

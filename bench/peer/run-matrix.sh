#!/usr/bin/env bash
# Every shape x weight type of bench/peer/make-models.sh against the native peer, one
# peer_bench.mjs run each (pp512 / tg128; with BATCH set, also batched decode), JSON results in
# OUT (default bench/results/peer-native). `uptime` before each run goes to OUT/uptime.log.
#
#   bench/peer/run-matrix.sh [--dir /tmp/models] [--out DIR] [--rounds 1] [--types "f16 q8_0 q4_k_m"]
#        [--batch 8,32] [--tag NAME] [SHAPE...] [-- extra peer_bench.mjs options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR=/tmp/models OUT="$ROOT/bench/results/peer-native" ROUNDS=1 TYPES="f16 q8_0 q4_k_m" BATCH="" TAG=""
shapes=() extra=()
while (($#)); do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --types) TYPES="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --tag) TAG="-$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) shapes+=("$1"); shift ;;
  esac
done
((${#shapes[@]})) || shapes=(llama-124m qwen3-0.6b llama3.2-1b)
mkdir -p "$OUT"
for shape in "${shapes[@]}"; do
  for t in $TYPES; do
    m="$DIR/$shape-$t.gguf"
    [[ -f "$m" ]] || { echo "run-matrix: no $m (bench/peer/make-models.sh makes it)" >&2; exit 1; }
    echo "$(date -u +%FT%TZ) $shape-$t: $(uptime)" | tee -a "$OUT/uptime.log"
    args=(--model "$m" --rounds "$ROUNDS" --json "$OUT/$shape-$t$TAG.json")
    [[ -n "$BATCH" ]] && args+=(--batch "$BATCH")
    echo "== $shape-$t$TAG"
    node "$ROOT/bench/peer/peer_bench.mjs" "${args[@]}" "${extra[@]}"
  done
done
echo "$(date -u +%FT%TZ) end: $(uptime)" | tee -a "$OUT/uptime.log"

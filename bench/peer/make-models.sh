#!/usr/bin/env bash
# The model shapes of issue 15 part 5, written with random weights by `prefixd make-model`
# (F16) and quantised by the native peer's `llama-quantize` (Q8_0, Q4_K_M); every file is then
# loaded once by llama.cpp (`llama-bench`, 8 tokens) to check that the peer accepts it.
# Files go to DIR (default /tmp/models) and are never committed (*.gguf is ignored).
#
#   bench/peer/make-models.sh [--dir DIR] [--prefixd build/app/prefixd] [--f16-only] [SHAPE...]
#
# SHAPE: llama-124m (default first), qwen3-0.6b, llama3.2-1b; none given: all three. Issue 18's
# families: qwen35-small (hybrid: 12 gated DeltaNet + 4 gated attention layers) and qwen3moe-small
# (32 experts, 8 used per token), made only when named.
# Needs the peer: scripts/build-peer.sh. Existing files are kept (delete them to remake).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR=/tmp/models
PREFIXD="$ROOT/build/app/prefixd"
shapes=()
F16_ONLY=0
while (($#)); do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --prefixd) PREFIXD="$2"; shift 2 ;;
    --f16-only) F16_ONLY=1; shift ;;  # only the F16 files (no peer needed yet)
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) shapes+=("$1"); shift ;;
  esac
done
((${#shapes[@]})) || shapes=(llama-124m qwen3-0.6b llama3.2-1b)
PEER_BIN="${PEER_BIN:-$("$ROOT/scripts/build-peer.sh" --print)}" || ((F16_ONLY)) || {
  echo "make-models: the native peer is not built; run scripts/build-peer.sh" >&2; exit 1; }
[[ -x "$PREFIXD" ]] || { echo "make-models: no prefixd at $PREFIXD" >&2; exit 1; }
mkdir -p "$DIR"
SHARED="${PREFIXD_SHARED:-$ROOT/../shared}"  # the project's shared folder (models/)

# Real vocabulary sizes are passed with --vocab: the synthetic vocabulary (or, for the 124M
# model, llama-2-tiny-random's padded to 32000) keeps the output matrix the real shape.
shape_flags() {
  case "$1" in
    llama-124m)  # the "~100M" shape of issues 2 and 7, untied output
      echo "--layers 12 --embd 768 --heads 12 --kv-heads 4 --ff 2048 --vocab 32000 --ctx 2048" \
           "--vocab-from $SHARED/models/llama-2-tiny-random.gguf" ;;
    qwen3-0.6b)  # Qwen3-0.6B: Q/K norms, head dim 128 (not n_embd / heads), tied output
      echo "--arch qwen3 --layers 28 --embd 1024 --heads 16 --kv-heads 8 --head-dim 128 --ff 3072" \
           "--vocab 151936 --ctx 2048 --tie-output --rope-base 1000000 --rms-eps 1e-6" ;;
    llama3.2-1b)  # Llama-3.2-1B: tied output, llama3 RoPE scaling (factor 32, 1/4, 8192)
      echo "--layers 16 --embd 2048 --heads 32 --kv-heads 8 --ff 8192 --vocab 128256 --ctx 2048" \
           "--tie-output --rope-base 500000 --rms-eps 1e-5 --rope-scaling llama3" \
           "--rope-scaling-factor 32 --rope-low-freq-factor 1 --rope-high-freq-factor 4" \
           "--rope-original-ctx 8192" ;;
    qwen35-small)  # Qwen3.5's layout at 1024 wide: every 4th layer gated attention (8 heads of
      # 256, 2 KV heads, RoPE over a quarter), the rest gated DeltaNet (16 Q/K and 16 V heads of 128)
      echo "--arch qwen35 --layers 16 --embd 1024 --heads 8 --kv-heads 2 --head-dim 256 --ff 3584" \
           "--full-attention-interval 4 --delta-k-heads 16 --delta-v-heads 16 --delta-head-dim 128" \
           "--vocab 32000 --ctx 2048 --rope-base 10000000 --rms-eps 1e-6" \
           "--vocab-from $SHARED/models/llama-2-tiny-random.gguf" ;;
    qwen3moe-small)  # Qwen3-30B-A3B's layout scaled down: 32 experts of 512, 8 used per token
      echo "--arch qwen3moe --layers 8 --embd 1024 --heads 16 --kv-heads 4 --head-dim 64 --ff 3072" \
           "--experts 32 --experts-used 8 --expert-ff 512 --vocab 32000 --ctx 2048" \
           "--rope-base 1000000 --rms-eps 1e-6 --vocab-from $SHARED/models/llama-2-tiny-random.gguf" ;;
    *) echo "make-models: unknown shape $1" >&2; return 1 ;;
  esac
}

for shape in "${shapes[@]}"; do
  flags="$(shape_flags "$shape")"
  f16="$DIR/$shape-f16.gguf"
  if [[ ! -s "$f16" ]]; then
    echo "make-models: $f16"
    # shellcheck disable=SC2086
    "$PREFIXD" make-model --out "$f16.tmp" $flags --type f16
    mv "$f16.tmp" "$f16"
  fi
  ((F16_ONLY)) && continue
  for q in Q8_0 Q4_K_M; do
    out="$DIR/$shape-${q,,}.gguf"
    if [[ ! -s "$out" ]]; then
      echo "make-models: $out"
      "$PEER_BIN/llama-quantize" "$f16" "$out.tmp" "$q" 2 > "$out.log" 2>&1 || {
        tail -20 "$out.log" >&2; exit 1; }
      mv "$out.tmp" "$out"
    fi
  done
  for t in f16 q8_0 q4_k_m; do
    m="$DIR/$shape-$t.gguf"
    if "$PEER_BIN/llama-bench" -m "$m" -p 8 -n 0 -r 1 -t 2 -o csv > "$m.load.log" 2>&1; then
      echo "make-models: llama.cpp loads $m ($(du -h "$m" | cut -f1))"
    else
      echo "make-models: llama.cpp FAILED to load $m:" >&2; tail -20 "$m.load.log" >&2; exit 1
    fi
  done
done

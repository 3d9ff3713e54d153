#!/usr/bin/env bash
# Compares two prefixd binaries side by side on a noisy machine: runs `bench-model` with each
# in turn, ROUNDS times, so that both see the same minutes, and prints one line per run.
#
#   scripts/ab-bench-model.sh BIN_A BIN_B ROUNDS [bench-model arguments...]
#   scripts/ab-bench-model.sh /tmp/prefixd-old build/app/prefixd 3 -m /tmp/models/llama-124m-f16.gguf -t 2 -r 1
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 BIN_A BIN_B ROUNDS [bench-model arguments...]" >&2
  exit 2
fi
a=$1 b=$2 rounds=$3
shift 3
for ((i = 0; i < rounds; i++)); do
  for bin in "$a" "$b"; do
    "$bin" bench-model "$@" --json 2>/dev/null |
      node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const r=JSON.parse(s);
        console.log(process.argv[1], 'pp', Math.round(r.prefill_tok_s), 'tg', r.decode_tok_s.toFixed(1))})" "$bin"
  done
done

#!/usr/bin/env bash
# The workload benchmark (issue 7) and the cache-tier figures (issue 5): builds prefixd, makes
# the ~100M test model if it is missing, and runs bench/bench_serve.mjs, which starts its own
# servers on 127.0.0.1 and writes bench/results/NAME.json, NAME-*.png and a Markdown summary.
#
#   scripts/bench-serve.sh                 # every suite on the ~100M model (~15-20 min, 2 cores)
#   scripts/bench-serve.sh --quick         # stories260K-sized, about a minute per suite
#   scripts/bench-serve.sh --suite tiers   # extra arguments go to bench/bench_serve.mjs
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
MODEL=/tmp/models/llama-124m-f16-ctx4096.gguf
if [[ " $* " != *" --quick "* && " $* " != *" --model "* && ! -f "$MODEL" ]]; then
  mkdir -p "$(dirname "$MODEL")"
  echo "bench-serve: writing the ~100M random-weight model (context 4,096) to $MODEL" >&2
  build/app/prefixd make-model --out "$MODEL" --layers 12 --embd 768 --heads 12 --kv-heads 4 \
    --ff 2048 --vocab 32000 --ctx 4096 --type f16 --vocab-from ../shared/models/llama-2-tiny-random.gguf
fi
exec node bench/bench_serve.mjs "$@"

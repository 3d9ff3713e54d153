#!/usr/bin/env bash
# The main job: builds prefixd and serves the default model on http://127.0.0.1:8080 (an
# OpenAI-compatible API; see README.md). Extra arguments go to `prefixd serve`
# (e.g. --port 9000 --disk-cache-dir ~/.cache/prefixd --admin-key KEY).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
MODEL=../shared/models/stories260K.gguf
if [ ! -f "$MODEL" ]; then
  MODEL=build/default-model.gguf
  echo "run: ../shared/models/stories260K.gguf not found; using a random-weight model that" \
       "'prefixd make-model' writes to $MODEL (its output is noise)" >&2
  [ -f "$MODEL" ] || build/app/prefixd make-model --out "$MODEL" --layers 4 --embd 128 --heads 4 \
    --kv-heads 2 --ff 344 --vocab 512 --ctx 2048
fi
exec build/app/prefixd serve -m "$MODEL" "$@"  # 127.0.0.1:8080 unless --host/--port (or PREFIXD_HOST/PREFIXD_PORT)

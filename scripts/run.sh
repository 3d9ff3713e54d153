#!/usr/bin/env bash
# The main job: builds prefixd and runs it on the default model. Until the server lands this
# generates from a prompt; extra arguments are passed to `prefixd generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
MODEL=../shared/models/stories260K.gguf
if [ ! -f "$MODEL" ]; then
  MODEL=build/default-model.gguf
  echo "run: ../shared/models/stories260K.gguf not found; using a random-weight model that" \
       "'prefixd make-model' writes to $MODEL (its output is noise)" >&2
  [ -f "$MODEL" ] || build/prefixd make-model --out "$MODEL" --layers 4 --embd 128 --heads 4 \
    --kv-heads 2 --ff 344 --vocab 512 --ctx 2048
fi
exec build/prefixd generate -m "$MODEL" -p "Once upon a time" -n 64 "$@"

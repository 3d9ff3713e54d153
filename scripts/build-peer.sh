#!/usr/bin/env bash
# Builds the native llama.cpp peer (issue 15, part 1) from the llama.cpp source
# that the pinned npm package node-llama-cpp ships as llama/gitRelease.bundle.
#
#   scripts/build-peer.sh            # build (or do nothing if already built)
#   scripts/build-peer.sh --print    # only print the binary directory (exit 1 if not built)
#
# Offline apart from the npm registry (one `npm pack` of the pinned version,
# checked against the integrity in bench/peer/package-lock.json) and, only when
# a build tool is missing, Debian packages. No other downloads: the llama.cpp
# CMake options below switch off every fetch (web UI bucket, curl, openssl, kleidiai).
#
# Output (ignored by git): peer/llama.cpp (source), peer/build/bin (binaries),
# peer/build/prefixd-peer.stamp (pinned commit + flags the binaries came from).
# Build log: stdout; run in the background with `> peer-build.log 2>&1 &` if wanted.
#
# Environment: PEER_DIR (default <repo>/peer), PEER_JOBS (default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEER_DIR="${PEER_DIR:-$ROOT/peer}"
JOBS="${PEER_JOBS:-2}"
# The pin: node-llama-cpp version (from bench/peer/package.json) and the llama.cpp
# commit its gitRelease.bundle holds. Bump both together.
NLC_VERSION="$(node -e 'console.log(require(process.argv[1]).dependencies["node-llama-cpp"])' "$ROOT/bench/peer/package.json")"
PEER_COMMIT="de3ff815ea7d559ee917f063901b8986f038abc6"
# In build order: the benchmark tools first (usable while llama-server still compiles).
TARGETS=(llama-quantize llama-bench llama-batched-bench llama-server)
CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DGGML_NATIVE=ON
  -DLLAMA_CURL=OFF
  -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_UI=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DGGML_CPU_KLEIDIAI=OFF
  -DBUILD_SHARED_LIBS=OFF
)
SRC="$PEER_DIR/llama.cpp"
BUILD="$PEER_DIR/build"
BIN="$BUILD/bin"
STAMP="$BUILD/prefixd-peer.stamp"
STAMP_TEXT="node-llama-cpp $NLC_VERSION llama.cpp $PEER_COMMIT ${CMAKE_FLAGS[*]}"

built() {
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" ]] || return 1
  [[ -d "$SRC/.git" && "$(git -C "$SRC" rev-parse HEAD)" == "$PEER_COMMIT" ]] || return 1
  local t
  for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || return 1; done
}

if [[ "${1:-}" == "--print" ]]; then
  built && { echo "$BIN"; exit 0; }
  exit 1
fi

if built; then
  echo "peer: already built at llama.cpp $PEER_COMMIT (node-llama-cpp $NLC_VERSION)"
  echo "peer binaries: $BIN"
  exit 0
fi

# Build tools: install through apt only what is missing (one apt-get update).
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v git   >/dev/null || missing+=(git)
command -v g++   >/dev/null || missing+=(g++)
command -v make  >/dev/null || command -v ninja >/dev/null || missing+=(ninja-build)
command -v npm   >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "peer: installing ${missing[*]} with apt"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

mkdir -p "$PEER_DIR"
start=$(date +%s)

# 1. The pinned npm tarball, checked against the lockfile's integrity.
if [[ ! -d "$SRC/.git" || "$(git -C "$SRC" rev-parse HEAD 2>/dev/null)" != "$PEER_COMMIT" ]]; then
  TGZ="$PEER_DIR/npm/node-llama-cpp-$NLC_VERSION.tgz"
  if [[ ! -f "$TGZ" ]]; then
    mkdir -p "$PEER_DIR/npm"
    (cd "$PEER_DIR/npm" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm pack --silent "node-llama-cpp@$NLC_VERSION" >/dev/null)
  fi
  want="$(node -e 'const l=require(process.argv[1]);console.log(l.packages["node_modules/node-llama-cpp"].integrity)' "$ROOT/bench/peer/package-lock.json")"
  have="sha512-$(openssl dgst -sha512 -binary "$TGZ" | base64 -w0)"
  if [[ "$want" != "$have" ]]; then
    echo "peer: $TGZ integrity $have does not match package-lock.json $want" >&2
    exit 1
  fi
  rm -rf "$PEER_DIR/npm/package"
  tar -xzf "$TGZ" -C "$PEER_DIR/npm" package/llama/gitRelease.bundle
  BUNDLE="$PEER_DIR/npm/package/llama/gitRelease.bundle"
  head="$(git bundle list-heads "$BUNDLE" | awk '$2=="HEAD"{print $1}')"
  if [[ "$head" != "$PEER_COMMIT" ]]; then
    echo "peer: bundle HEAD $head is not the pinned $PEER_COMMIT" >&2
    exit 1
  fi
  # 2. Offline clone of the bundle.
  rm -rf "$SRC"
  git -c advice.detachedHead=false clone --quiet "$BUNDLE" "$SRC"
  git -C "$SRC" checkout --quiet "$PEER_COMMIT"
fi

# 3. Configure and build only the four tools.
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$SRC" -B "$BUILD" "${gen[@]}" "${CMAKE_FLAGS[@]}"
for t in "${TARGETS[@]}"; do
  cmake --build "$BUILD" -j "$JOBS" --target "$t"
  echo "peer: $BIN/$t built ($(( $(date +%s) - start )) s)"
done
for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || { echo "peer: $BIN/$t missing after build" >&2; exit 1; }; done
echo "$STAMP_TEXT" > "$STAMP"
echo "peer: built llama.cpp $PEER_COMMIT in $(( $(date +%s) - start )) s"
echo "peer binaries: $BIN"

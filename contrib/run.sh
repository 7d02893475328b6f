#!/usr/bin/env bash
# Installs what is missing, builds berth, installs it under PREFIX (default /usr/local) and runs
# berthd in the foreground with the default configuration (/etc/berth/berth.yaml if present, socket
# /run/berth/berth.sock). Extra arguments go to berthd.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-/usr/local}
"$here/contrib/install-deps.sh"
"$here/contrib/build.sh" "$here/build/release" -DCMAKE_BUILD_TYPE=Release -DBERTH_TESTS=OFF
cmake --install "$here/build/release" --prefix "$prefix" >/dev/null
exec "$prefix/bin/berthd" "$@"

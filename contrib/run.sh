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
# Pods need a CNI network: install berth's default (bridge berth0, 10.88.0.0/16) if the directory
# berthd reads has no configuration at all.
conf_dir=$("$prefix/bin/berthd" "$@" config | awk '$1 == "conf_dir:" { print $2 }')
if [ -n "$conf_dir" ] && ! ls "$conf_dir"/*.conflist "$conf_dir"/*.conf "$conf_dir"/*.json >/dev/null 2>&1; then
  mkdir -p "$conf_dir"
  install -m 0644 "$here/contrib/cni/10-berth.conflist" "$conf_dir/10-berth.conflist"
  echo "run: installed the default CNI network in $conf_dir/10-berth.conflist" >&2
fi
exec "$prefix/bin/berthd" "$@"

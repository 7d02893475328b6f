#!/usr/bin/env bash
# Builds the fuzz targets of test/fuzz as libFuzzer binaries (clang, with ASan and UBSan) in
# build/fuzz and runs them. Usage: contrib/fuzz.sh [TARGET|all] [SECONDS] [libFuzzer flags...]
#   contrib/fuzz.sh                  every target for 60 s each, one after the other
#   contrib/fuzz.sh unpack 600       one target for 10 minutes
# Each run starts from test/fuzz/corpus/<target> and test/fuzz/crashers/<target>; what it finds
# goes to build/fuzz/corpus/<target> and build/fuzz/artifacts/<target>, never into the tree.
# To keep a new seed or crasher, copy it into test/fuzz (minimise a corpus first with -merge=1).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build/fuzz"
target=${1:-all}
seconds=${2:-60}
shift $(($# < 2 ? $# : 2))

mkdir -p "$build"
CC=clang CXX=clang++ cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBERTH_FUZZ=ON >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; echo "fuzz: cmake configure failed" >&2; exit 1; }
ninja -C "$build" -j "$(nproc)"

if [[ $target == all ]]; then
  targets=$(cd "$here/test/fuzz" && ls -- *_fuzz.cc | sed 's/_fuzz\.cc$//')
else
  targets=$target
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in $targets; do
  corpus="$build/corpus/$t" artifacts="$build/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  seeds=("$here/test/fuzz/corpus/$t")
  [[ -d $here/test/fuzz/crashers/$t ]] && seeds+=("$here/test/fuzz/crashers/$t")
  echo "fuzz: $t for ${seconds}s" >&2
  "$build/test/fuzz/${t}_fuzz" "$corpus" "${seeds[@]}" -max_total_time="$seconds" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/" "$@"
done

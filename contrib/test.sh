#!/usr/bin/env bash
# Installs what is missing, builds the Release configuration contrib/run.sh builds (so that the run
# command cannot break unnoticed), then builds berth with AddressSanitizer and UBSan and runs every
# test (unit, integration, e2e) with CTest. Run as root: integration and e2e tests need it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build/test"
"$here/contrib/install-deps.sh"
"$here/contrib/build.sh" "$here/build/release" -DCMAKE_BUILD_TYPE=Release -DBERTH_TESTS=OFF
"$here/contrib/build.sh" "$build" -DCMAKE_BUILD_TYPE=Debug -DBERTH_SANITIZE=address,undefined
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
ctest --output-on-failure --timeout 600 -j "$(nproc)" "$@"

#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang and runs each for a bounded time
# (FUZZ_SECONDS, default 60) from its seed corpus in tests/fuzz/corpus/.
# Fails on any crash, leak, timeout or sanitizer report.
#   tests/fuzz/run.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCLMOE_FUZZ=ON \
  -DCLMOE_BUILD_TESTS=OFF -DCLMOE_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_desc fuzz_tensor fuzz_route \
  fuzz_score fuzz_checkpoint fuzz_quant_layer >/dev/null
export CLMOE_CACHE_DIR="$build/kernel-cache"
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp"
for h in desc tensor route score checkpoint quant_layer; do
  work="$build/corpus-$h"
  mkdir -p "$work"
  echo "fuzz_$h: ${seconds} s"
  "$build/fuzz_$h" -max_total_time="$seconds" -timeout=30 \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$build/" \
    "$work" \
    "$root/tests/fuzz/corpus/$h" 2>"$build/fuzz_$h.log" ||
    { tail -60 "$build/fuzz_$h.log"; echo "fuzz_$h FAILED"; exit 1; }
  grep -E "stat::number_of_executed_units|stat::peak_rss" "$build/fuzz_$h.log"
done
echo "fuzzers: all passed"

#!/usr/bin/env bash
# README command 2: installs what is missing, builds, runs every test:
# ctest, pytest on the Python binding, cargo test on the Rust crate, the C
# suite again under ASan + UBSan +
# LSan, the thread test under TSan, and the libFuzzer harnesses for
# FUZZ_SECONDS (default 60) each. CI=true makes warnings errors.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
cd "$build_dir"
ctest --output-on-failure -j2
cd "$root"
CLMOE_LIBRARY="$build_dir/libclmoe.so" CLMOE_CACHE_DIR="$build_dir/kernel-cache" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python

# The Rust crate (bindings/rust) with Debian's cargo and rustc, offline,
# against the library just built (another rustc first on PATH is not used).
(cd "$root/bindings/rust" &&
  CLMOE_LIB_DIR="$build_dir" CLMOE_CACHE_DIR="$build_dir/kernel-cache" \
  CARGO_TARGET_DIR="$build_dir/rust-target" RUSTC=/usr/bin/rustc \
  RUSTDOC=/usr/bin/rustdoc /usr/bin/cargo test --offline --quiet)

# The C suite again under AddressSanitizer + UndefinedBehaviorSanitizer
# (LeakSanitizer on, with the OpenCL runtime's own allocations suppressed);
# the fault-injection walk with a warm program cache only (both walks ran
# above), as every call is several times slower here. The MPI tests are left
# out: Open MPI's own allocations are not LeakSanitizer-clean; so are the
# *_local_kernel reruns, whose host code is the tests' own (only the
# device kernel differs, which the sanitizers do not see).
asan_dir="$build_dir-asan"
cmake -S "$root" -B "$asan_dir" -DCMAKE_BUILD_TYPE=Debug -DCLMOE_WERROR=$werror \
  -DCLMOE_SANITIZE=address,undefined >/dev/null
cmake --build "$asan_dir" -j"$(nproc)" >/dev/null
cd "$asan_dir"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
LSAN_OPTIONS="suppressions=$root/tests/lsan.supp" CLMOE_FAULT_WALKS=warm \
  ctest --output-on-failure -j2 -E "check_install|check_exports|test_ep_np|_local_kernel"

# The Rust crate's objects, dropped in every order, leak nothing: its test
# against the sanitized library, with LeakSanitizer preloaded.
rust_test=$(ls -t "$build_dir"/rust-target/debug/deps/api-* | grep -v '\.d$' | head -1)
LD_LIBRARY_PATH="$asan_dir" LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
  ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS="suppressions=$root/tests/lsan.supp" \
  CLMOE_CACHE_DIR="$build_dir/kernel-cache" \
  "$rust_test" objects_drop_in_any_order --test-threads=1

# The thread test again under ThreadSanitizer.
tsan_dir="$build_dir-tsan"
cmake -S "$root" -B "$tsan_dir" -DCMAKE_BUILD_TYPE=Debug -DCLMOE_WERROR=$werror \
  -DCLMOE_SANITIZE=thread -DCLMOE_BUILD_BENCH=OFF >/dev/null
cmake --build "$tsan_dir" -j"$(nproc)" --target test_threads >/dev/null
cd "$tsan_dir"
TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -R '^test_threads$'

# libFuzzer harnesses, 60 s each (clang; tests/fuzz/run.sh).
FUZZ_SECONDS=${FUZZ_SECONDS:-60} bash "$root/tests/fuzz/run.sh" "$build_dir-fuzz"


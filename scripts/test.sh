#!/usr/bin/env bash
# README command 2: installs what is missing, builds, runs every test
# (ctest, then pytest on the Python binding).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
cd "$build_dir"
ctest --output-on-failure -j2
cd "$root"
CLMOE_LIBRARY="$build_dir/libclmoe.so" CLMOE_CACHE_DIR="$build_dir/kernel-cache" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python

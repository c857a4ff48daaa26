#!/usr/bin/env bash
# Compares the built library's ABI (exported functions and the public types
# they reach, from include/clmoe) with the committed baseline abi/clmoe.abi.
# Fails on any removed or changed symbol or type; additions are allowed.
#   check_abi.sh LIBRARY SOURCE_DIR [--update]
# --update rewrites the baseline: do it deliberately, with a version bump
# (README "ABI").
set -euo pipefail
lib=$1 src=$2
baseline="$src/abi/clmoe.abi"
headers=$(cd "$src/include/clmoe" && pwd)
if [ "${3:-}" = "--update" ]; then
  mkdir -p "$src/abi"
  abidw --no-corpus-path --no-show-locs --headers-dir "$headers" \
    --out-file "$baseline" "$lib"
  echo "ABI baseline written to $baseline"
  exit 0
fi
set +e
# abi/opaque.supp: the private layout of the opaque handles is not ABI.
abidiff --no-added-syms --suppressions "$src/abi/opaque.supp" "$baseline" "$lib"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  echo "ABI check: the library differs from $baseline (abidiff status $rc)"
  exit 1
fi
echo "ABI check: no removed or changed symbols or types against $baseline"

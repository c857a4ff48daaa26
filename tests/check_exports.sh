#!/bin/sh
# Fails when the shared library exports any symbol outside the clmoe_ prefix.
set -eu
lib="$1"
syms=$(nm -D --defined-only "$lib" | awk '{print $NF}')
[ -n "$syms" ] || { echo "no exported symbols found in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^clmoe_' || true)
if [ -n "$bad" ]; then
  echo "symbols outside clmoe_* exported by $lib:"
  printf '%s\n' "$bad"
  exit 1
fi
echo "$(printf '%s\n' "$syms" | wc -l) exported symbols, all clmoe_*"

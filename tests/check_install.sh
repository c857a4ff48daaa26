#!/bin/sh
# Installs clmoe into a temporary prefix and builds examples/c against it
# twice, with find_package(clmoe) and with pkg-config, then runs both.
set -eu
build_dir="$1"
src_dir="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build_dir" --prefix "$tmp/prefix" >/dev/null
libdir=$(find "$tmp/prefix" -name 'libclmoe.so' -printf '%h\n' | head -n 1)
cmake -S "$src_dir/examples/c" -B "$tmp/cmake-build" \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cmake-build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/cmake-build/route_example"
PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 -o "$tmp/pc_example" \
  "$src_dir/examples/c/route_example.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs clmoe)
LD_LIBRARY_PATH="$libdir" "$tmp/pc_example"
echo "find_package and pkg-config consumers both built and ran"

#!/usr/bin/env bash
# Installs the Debian packages clmoe needs (when missing), then configures and
# builds it. Sourced by scripts/demo.sh and scripts/test.sh.
#   CLMOE_BUILD_DIR  build directory (default: build)
#   CI=true          warnings become errors
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${CLMOE_BUILD_DIR:-$root/build}

packages=(build-essential cmake pkg-config ocl-icd-opencl-dev opencl-c-headers
          libclblast-dev pocl-opencl-icd clinfo python3-numpy python3-pytest
          python3-pyopencl python3-matplotlib python3-venv python3-pip
          libopenblas-dev abigail-tools clang libclang-rt-14-dev libjansson-dev
          libopenmpi-dev openmpi-bin python3-mpi4py cargo rustc python3-torch)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  echo "clmoe setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

werror=OFF
[ "${CI:-}" = "true" ] && werror=ON
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release \
  -DCLMOE_WERROR=$werror >/dev/null
cmake --build "$build_dir" -j"$(nproc)"

#!/usr/bin/env bash
# README command 1: installs what is missing, builds, and runs the demo on the
# default device (CLMOE_DEVICE picks another).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
"$build_dir/clmoe-info"
echo
"$build_dir/clmoe-demo"

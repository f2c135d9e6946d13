#!/usr/bin/env bash
# The whole test suite from a clean clone: install packages, fetch data, build, run every test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/install_deps.sh"
"$ROOT/scripts/fetch_data.sh"
"$ROOT/scripts/build.sh"
cd "${MEGAHOST_BUILD_DIR:-$ROOT/build}"
ctest --output-on-failure -j "$(nproc)" "$@"

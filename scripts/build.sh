#!/usr/bin/env bash
# Configures and builds megahost (CPU, Debian's libtorch) into build/. Extra args go to cmake.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MEGAHOST_BUILD_DIR:-$ROOT/build}"
JOBS="${MEGAHOST_JOBS:-$(nproc)}"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build "$BUILD" -j "$JOBS"
